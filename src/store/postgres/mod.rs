//! Postgres itself, whatever the tables: the service's pool and how it connects (`pool`; `wait`,
//! for a database still starting), one statement's session on it (`session`: named or unnamed,
//! and bounded on this side), where a server stands (`wal`), and the schema: whether it is this
//! build's (`schema`) and how it gets there (`migrate`).

pub mod lanes;
pub mod literal;
pub mod migrate;
pub mod pool;
pub mod schema;
pub mod session;
pub mod wait;
pub mod wal;
