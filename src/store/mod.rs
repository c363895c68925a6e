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

/// Applies pending migrations. A migration that stops on the database's data says why in one
/// line, with its hint (which names the README section that says how to fix the data).
pub async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateError;
    use sqlx::postgres::PgDatabaseError;
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::ExecuteMigration(sqlx::Error::Database(error), version)) => {
            let hint = error
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(PgDatabaseError::hint)
                .map(|hint| format!(" ({hint})"))
                .unwrap_or_default();
            anyhow::bail!("migration {version} failed: {}{hint}", error.message())
        }
        Err(error) => Err(anyhow::Error::new(error).context("migration failed")),
    }
}

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
