//! Whether the database's schema is the one this build was made for: the migrations applied
//! (`_sqlx_migrations`) against those it carries (`MIGRATOR`). A binary rolled out before its
//! migrations must say so rather than answer 500s; one that finds a newer release's migrations
//! applied (the expand phase of a rolling deploy) serves, as the expand rule lets it.

use sqlx::{PgPool, Row};

use crate::store::MIGRATOR;

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
    /// The applied migrations cannot be read as this role: what Postgres said, and what to do.
    Unreadable { reason: String, action: String },
    /// The migrations applied are another project's (see `another_projects`).
    Foreign { versions: Vec<i64> },
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
            Self::Foreign { .. } => tracing::error!("{}", self.refusal().unwrap_or_default()),
            Self::Unreadable { reason, action } => tracing::error!(
                reason,
                action,
                "cannot tell whether the database's schema is this build's: answering 503 until it can"
            ),
        }
    }
}

impl Schema {
    /// Why no command of this build may touch this database, if it is another project's.
    pub fn refusal(&self) -> Option<String> {
        let Self::Foreign { versions } = self else {
            return None;
        };
        let shown: Vec<String> = versions.iter().take(5).map(i64::to_string).collect();
        Some(format!(
            "the database DATABASE_URL names holds another project's migrations in {} ({}{}), \
             none of agent-api's before them: agent-api uses only a database of its own \
             (an empty one, or one agent-api migrated)",
            "_sqlx_migrations",
            shown.join(", "),
            if versions.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ))
    }
}

/// Whether `applied` (the versions in `_sqlx_migrations`) is another project's history: a
/// version older than this build's first migration, or none of this build's at all. (A newer
/// release's versions come after ours, beside them.) The versions that are not ours.
pub fn another_projects(applied: &[i64]) -> Option<Vec<i64>> {
    let first = MIGRATOR.iter().map(|migration| migration.version).min()?;
    let shares_one = applied
        .iter()
        .any(|version| MIGRATOR.version_exists(*version));
    let older = applied.iter().any(|version| *version < first);
    (!applied.is_empty() && (older || !shares_one)).then(|| {
        applied
            .iter()
            .filter(|version| !MIGRATOR.version_exists(**version))
            .copied()
            .collect()
    })
}

/// Postgres's `undefined_table`: no migration was ever applied.
const UNDEFINED_TABLE: &str = "42P01";
/// Postgres's `insufficient_privilege`: the role was not granted what the check reads.
pub(in crate::store) const INSUFFICIENT_PRIVILEGE: &str = "42501";

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
            Err(sqlx::Error::Database(error)) => {
                let role = pool.connect_options().get_username().to_string();
                let action = match error.code().as_deref() {
                    Some(INSUFFICIENT_PRIVILEGE) => format!(
                        "as the tables' owner: grant select on _sqlx_migrations to \"{role}\" \
                         (docs/operations.md, Database roles)"
                    ),
                    _ => "check _sqlx_migrations: `agent-api migrate` made it".to_string(),
                };
                return Ok(Schema::Unreadable {
                    reason: error.message().to_string(),
                    action,
                });
            }
            rows => rows?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?,
        };
    if let Some(versions) = another_projects(&applied) {
        return Ok(Schema::Foreign { versions });
    }
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
