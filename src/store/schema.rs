//! Whether the database's schema is the one this build was made for: the migrations applied
//! (`_sqlx_migrations`) against those it carries (`MIGRATOR`). A binary rolled out before its
//! migrations must say so rather than answer 500s; one that finds a newer release's migrations
//! applied (the expand phase of a rolling deploy) serves, as the expand rule lets it.

use sqlx::{PgPool, Row};

use super::MIGRATOR;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Schema {
    /// Not compared yet (or the database did not answer).
    #[default]
    Unknown,
    /// Every migration of this build is applied, and nothing else.
    Current,
    /// Every migration of this build is applied, and these this build does not know.
    Ahead { unknown: Vec<i64> },
    /// These migrations of this build are not applied (or failed): run `agent-api migrate`.
    Behind { missing: Vec<i64> },
}

impl Schema {
    /// One line for the log, when it changes.
    pub fn log(&self) {
        match self {
            Self::Unknown => {}
            Self::Current => tracing::info!("the database's schema is this build's"),
            Self::Ahead { unknown } => tracing::info!(
                ?unknown,
                "the database holds migrations of a newer release: serving, as the expand rule allows"
            ),
            Self::Behind { missing } => tracing::error!(
                ?missing,
                "the database lacks migrations this build needs: answering 503 until `agent-api migrate` runs"
            ),
        }
    }
}

/// Postgres's `undefined_table`: no migration was ever applied.
const UNDEFINED_TABLE: &str = "42P01";

pub async fn compare(pool: &PgPool) -> Result<Schema, sqlx::Error> {
    // The simple protocol: `DATABASE_URL` may go through a transaction pooler.
    let applied: Vec<i64> =
        match sqlx::raw_sql("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await
        {
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNDEFINED_TABLE) =>
            {
                Vec::new()
            }
            rows => rows?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?,
        };
    let missing: Vec<i64> = MIGRATOR
        .iter()
        .map(|migration| migration.version)
        .filter(|version| !applied.contains(version))
        .collect();
    let unknown: Vec<i64> = applied
        .into_iter()
        .filter(|version| !MIGRATOR.version_exists(*version))
        .collect();
    Ok(match (missing.is_empty(), unknown.is_empty()) {
        (false, _) => Schema::Behind { missing },
        (true, true) => Schema::Current,
        (true, false) => Schema::Ahead { unknown },
    })
}
