//! Reaching Postgres at start: `DATABASE_URL` parsed, and a wait with backoff for a database
//! still starting (so it is not a crash loop), but none for an answer that waiting cannot change
//! (no such database, a refused password or certificate, a transaction pooler refusing session
//! settings), said in one line with what to do.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::config::{ConfigError, Settings};
use crate::exit::ActionNeeded;

/// `DATABASE_URL`, parsed.
pub fn connect_options(settings: &Settings) -> Result<PgConnectOptions, ConfigError> {
    settings.database_url()?.parse().map_err(|error| {
        ConfigError::about(
            "database.url",
            &format!("is not a usable Postgres URL: {error}"),
        )
    })
}

/// A pool once the database answers.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = connect_options(settings)?;
    let pool = super::pool::pool(settings.database_url()?, &settings.database)?;
    answering(settings, &options, async || super::pool::ping(&pool).await).await?;
    Ok(pool)
}

/// Waits with backoff, up to `database.startup_wait_seconds`, for `attempt` to reach the
/// database, so a database still starting is not a crash loop; but not on an answer that
/// waiting cannot change (no such database, a refused password or certificate).
pub async fn answering(
    settings: &Settings,
    options: &PgConnectOptions,
    mut attempt: impl AsyncFnMut() -> Result<(), sqlx::Error>,
) -> anyhow::Result<()> {
    let database = format!(
        "database {:?} at {}:{}",
        options.get_database().unwrap_or("postgres"),
        options.get_host(),
        options.get_port()
    );
    let wait = Duration::from_secs(settings.database.startup_wait_seconds);
    let deadline = Instant::now() + wait;
    let mut backoff = Duration::from_millis(250);
    loop {
        let error = match attempt().await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let said = said(&error);
        if !worth_waiting(&error) {
            return Err(ActionNeeded(format!("the {database} refused: {said}")).into());
        }
        if Instant::now() + backoff >= deadline {
            return Err(ActionNeeded(format!(
                "the {database} did not answer within {} s (APP__DATABASE__STARTUP_WAIT_SECONDS): {said}",
                wait.as_secs()
            ))
            .into());
        }
        if backoff == Duration::from_millis(250) {
            tracing::warn!(error = %said, "the {database} does not answer yet; waiting for it");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Whether an error reaching the database may go away by itself: the server down or starting
/// (refused, reset, timed out, "the database system is starting up"), as opposed to an answer
/// (a certificate refused by TLS comes as data that is invalid).
fn worth_waiting(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(error) => error.kind() != std::io::ErrorKind::InvalidData,
        sqlx::Error::PoolTimedOut => true,
        // 57P03: cannot connect now (starting up, shutting down, in recovery).
        sqlx::Error::Database(database) => database.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// What the database (or the way to it) said, in one line without Postgres's source locations,
/// and what to do where the answer alone does not say.
fn said(error: &sqlx::Error) -> String {
    match error {
        // PgBouncer in transaction mode forwards no session settings.
        sqlx::Error::Database(database)
            if database
                .message()
                .starts_with("unsupported startup parameter") =>
        {
            format!(
                "{}: {}",
                database.message(),
                super::pool::TRANSACTION_POOLER_ADVICE
            )
        }
        sqlx::Error::Database(database) => database.message().to_string(),
        other => other.to_string().replace('\n', " "),
    }
}
