//! Everything that speaks SQL, in three rooms: Postgres itself (`postgres`: connecting and
//! waiting for it, one statement's session, where a server stands, the schema and its
//! migrations), the change feed (`feed`: listening, and what is said on the channel), and the
//! database as requests meet it (`database`, with the standbys of `replicas`) beside one module
//! per table family (`caller_lines`, `partners`, `tenants`) and the demo data.

pub mod caller_lines;
pub mod database;
pub mod demo;
pub mod feed;
pub mod partners;
pub mod postgres;
pub mod replicas;
pub mod tenants;

pub use database::Database;
pub use postgres::pool::{TRANSACTION_POOLER_ADVICE, ping, pool, session_mode_not_in_force};
pub use postgres::wal::refuse_standby;

/// The migrations this build was made with (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why a list could not be read: the database failed, or it refused the token's partner
/// (unknown, not a partner, deleted, or the token revoked). Every list says the latter the
/// same way, so handlers answer 401 with a plain `?`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("partner unknown, deleted, not a partner, or its tokens were revoked")]
    PartnerRejected,
}
