//! Everything that speaks SQL: the pool, the migrations, one module per table family, and the
//! change feed the in-memory state follows.

pub mod announcements;
pub mod caller_lines;
pub mod changes;
pub mod database;
pub mod demo;
pub mod migrate;
pub mod partners;
mod pool;
pub mod replicas;
pub mod schema;
pub mod session;
pub mod tenants;

pub use database::Database;
pub use pool::{TRANSACTION_POOLER_ADVICE, ping, pool, session_mode_not_in_force};

use crate::config::ConfigError;

/// Refuses a standby as the primary: the change feed cannot `LISTEN` on one, and the heartbeat
/// cannot be sent through one (Postgres: `cannot execute LISTEN during recovery`).
pub async fn refuse_standby(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use sqlx::Row;
    let in_recovery: bool = sqlx::raw_sql("select pg_is_in_recovery()")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if in_recovery {
        return Err(ConfigError(
            "DATABASE_URL names a standby: it must name the primary (standbys go in DATABASE_REPLICA_URLS)"
                .into(),
        )
        .into());
    }
    Ok(())
}

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
