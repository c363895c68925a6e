//! Everything that speaks SQL: the pool, the migrations, one module per table family, and the
//! change feed the in-memory state follows.

pub mod caller_lines;
pub mod changes;
pub mod demo;
pub mod partners;
mod pool;
pub mod tenants;

pub use pool::{ping, pool};

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
