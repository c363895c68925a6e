//! `agent-api migrate`, as an upgrade of a database that partners are being served from needs it
//! (docs/operations.md, "Upgrade"): a session of its own, never the service's (no statement timeout
//! unless set; a lock timeout on every statement, since reads queue behind a migration waiting
//! for a lock); a migration whose lock did not come in time tried again, saying each time which
//! lock it waited for and who holds it; each migration announced as it starts and ends, with
//! its time; and its SQL never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::migrate::{Migrate, MigrateError, Migration};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::config::MigrateSettings;
use crate::exit::ActionNeeded;
use crate::store::MIGRATOR;

/// How the migrating session names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "agent-api migrate";

const TABLE: &str = "_sqlx_migrations";

/// Postgres's `lock_not_available`: `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// Postgres's `query_canceled`: `statement_timeout` ran out.
const QUERY_CANCELED: &str = "57014";

/// The migration session's options: its own timeouts, sent at connection (so `migrate` needs
/// a session with Postgres itself, never a transaction pooler's).
pub fn session_options(options: &PgConnectOptions, settings: &MigrateSettings) -> PgConnectOptions {
    options
        .clone()
        .application_name(APPLICATION_NAME)
        .options([
            (
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            ),
            ("lock_timeout", settings.lock_timeout_ms.to_string()),
        ])
        // A migration's SQL is not a slow statement to log whole.
        .disable_statement_logging()
}

/// Applies the pending migrations of this build, on a session made with `session_options`.
pub async fn run(options: &PgConnectOptions, settings: &MigrateSettings) -> anyhow::Result<()> {
    let options = session_options(options, settings);
    let mut connection = PgConnection::connect_with(&options).await?;
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut connection)
        .await?;
    let mut locks = Locks::watching(pid, options);
    // Two migrates at once: the second waits for the first (within the lock timeout, retried).
    locks
        .retrying(settings, "taking the migration lock", async || {
            connection.lock().await
        })
        .await?;
    connection.ensure_migrations_table(TABLE).await?;
    if let Some(version) = connection.dirty_version(TABLE).await? {
        return Err(ActionNeeded(format!(
            "migration {version} is marked failed in {TABLE}: see docs/operations.md, \"Upgrade\""
        ))
        .into());
    }
    let applied: HashMap<i64, _> = connection
        .list_applied_migrations(TABLE)
        .await?
        .into_iter()
        .map(|applied| (applied.version, applied.checksum))
        .collect();
    let versions: Vec<i64> = applied.keys().copied().collect();
    if let Some(refusal) = super::schema::another_projects(&versions)
        .and_then(|versions| super::schema::Schema::Foreign { versions }.refusal())
    {
        return Err(ActionNeeded(refusal).into());
    }
    for migration in MIGRATOR.iter() {
        if applied
            .get(&migration.version)
            .is_some_and(|checksum| *checksum != migration.checksum)
        {
            return Err(ActionNeeded(format!(
                "migration {} was changed after it was applied: released migrations never change",
                migration.version
            ))
            .into());
        }
    }
    let ahead: Vec<i64> = applied
        .keys()
        .filter(|version| !MIGRATOR.version_exists(**version))
        .copied()
        .collect();
    if !ahead.is_empty() {
        tracing::warn!(
            ?ahead,
            "the database holds migrations this build does not know (a newer release applied them)"
        );
    }
    for migration in MIGRATOR.iter() {
        if applied.contains_key(&migration.version) {
            continue;
        }
        let started = Instant::now();
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "applying migration"
        );
        let doing = format!(
            "migration {} ({})",
            migration.version, migration.description
        );
        locks
            .retrying(settings, &doing, async || {
                connection.apply(TABLE, migration).await
            })
            .await
            .map_err(|error| stopped(migration, error))?;
        tracing::info!(
            version = migration.version,
            seconds = started.elapsed().as_secs_f64(),
            "applied migration"
        );
    }
    connection.unlock().await?;
    Ok(())
}

/// A migration that stopped on the database's data says why in one line, with its hint (which
/// names the section of docs/operations.md, once the README, that says how to fix the data).
fn stopped(migration: &Migration, error: anyhow::Error) -> anyhow::Error {
    let database = match error.downcast_ref::<MigrateError>() {
        Some(MigrateError::ExecuteMigration(sqlx::Error::Database(database), _)) => database,
        _ => return error,
    };
    if database.code().as_deref() == Some(QUERY_CANCELED) {
        return ActionNeeded(format!(
            "migration {} took longer than APP__MIGRATE__STATEMENT_TIMEOUT_MS: raise it, or set 0 (none)",
            migration.version
        ))
        .into();
    }
    let hint = database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(sqlx::postgres::PgDatabaseError::hint)
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default();
    ActionNeeded(format!(
        "migration {} failed: {}{hint}",
        migration.version,
        database.message()
    ))
    .into()
}

/// Who holds a lock the migration waits for, as `pg_locks` and `pg_stat_activity` say.
#[derive(Debug, Clone)]
struct Blocker {
    lock: String,
    pid: i32,
    application_name: String,
    user: String,
    state: String,
    seconds: f64,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} blocked by pid {} (application_name {:?}, user {}, {} for {:.0} s)",
            self.lock, self.pid, self.application_name, self.user, self.state, self.seconds
        )
    }
}

/// Watches, from a session of its own, which lock the migrating session waits for.
struct Locks {
    pid: i32,
    options: PgConnectOptions,
    watcher: Option<PgConnection>,
}

impl Locks {
    fn watching(pid: i32, options: PgConnectOptions) -> Self {
        Self {
            pid,
            options: options.application_name("agent-api migrate (watching its locks)"),
            watcher: None,
        }
    }

    /// Runs `attempt`, again after a lock timeout up to `settings.retries` times, naming the
    /// blocker each time; after the last, an `ActionNeeded` naming it.
    async fn retrying<T>(
        &mut self,
        settings: &MigrateSettings,
        doing: &str,
        mut attempt: impl AsyncFnMut() -> Result<T, MigrateError>,
    ) -> anyhow::Result<T> {
        let lock_timeout = Duration::from_millis(settings.lock_timeout_ms);
        for retry in 1..=settings.retries + 1 {
            let seen = Mutex::new(None);
            let outcome = tokio::select! {
                outcome = attempt() => outcome,
                () = self.watch(&seen, lock_timeout) => unreachable!("watching never ends"),
            };
            match outcome {
                Err(error) if is_lock_timeout(&error) => {}
                outcome => return Ok(outcome?),
            }
            let blocker = seen.into_inner().expect("no holder panics").map_or_else(
                || "a lock whose holder was gone before it was seen".into(),
                |b: Blocker| b.to_string(),
            );
            if retry > settings.retries {
                return Err(ActionNeeded(format!(
                    "{doing} waited {lock_timeout:?} for a lock {} times: {blocker}; end that \
                     session (select pg_terminate_backend(<pid>)) or migrate once it is done",
                    settings.retries + 1
                ))
                .into());
            }
            let wait = settings.retry_wait(retry);
            tracing::warn!(
                retry,
                of = settings.retries,
                retry_in_seconds = wait.as_secs_f64(),
                %blocker,
                "{doing} waited {lock_timeout:?} for a lock; trying again"
            );
            tokio::time::sleep(wait).await;
        }
        unreachable!("the last try returns")
    }

    /// Polls the migrating session's lock waits until dropped, keeping the last blocker seen.
    async fn watch(&mut self, seen: &Mutex<Option<Blocker>>, lock_timeout: Duration) {
        let every = (lock_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            tokio::time::sleep(every).await;
            if let Some(blocker) = self.blocker().await {
                *seen.lock().expect("no holder panics") = Some(blocker);
            }
        }
    }

    async fn blocker(&mut self) -> Option<Blocker> {
        if self.watcher.is_none() {
            self.watcher = PgConnection::connect_with(&self.options).await.ok();
        }
        let watcher = self.watcher.as_mut()?;
        let row: Option<(String, i32, String, String, String, f64)> = sqlx::query_as(
            "select case when w.locktype = 'relation' then w.mode || ' on ' || w.relation::regclass::text
                         when w.locktype = 'advisory' then 'the migration lock'
                         else w.locktype || ' lock' end,
                    b.pid, coalesce(b.application_name, ''), coalesce(b.usename::text, ''),
                    coalesce(b.state, ''),
                    extract(epoch from now() - coalesce(b.xact_start, b.backend_start))::float8
             from pg_locks w
             cross join lateral unnest(pg_blocking_pids(w.pid)) as blocking (pid)
             join pg_stat_activity b on b.pid = blocking.pid
             where w.pid = $1 and not w.granted
             order by b.xact_start nulls last
             limit 1",
        )
        .bind(self.pid)
        .fetch_optional(&mut *watcher)
        .await
        .ok()?;
        row.map(
            |(lock, pid, application_name, user, state, seconds)| Blocker {
                lock,
                pid,
                application_name,
                user,
                state,
                seconds,
            },
        )
    }
}

fn is_lock_timeout(error: &MigrateError) -> bool {
    let database = match error {
        MigrateError::Execute(sqlx::Error::Database(database))
        | MigrateError::ExecuteMigration(sqlx::Error::Database(database), _) => database,
        _ => return false,
    };
    database.code().as_deref() == Some(LOCK_NOT_AVAILABLE)
}
