//! The connection pool, and the one way statements use it: timed, and counted while waiting.

use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tracing::Instrument;

use crate::config::{DatabaseSettings, PoolMode};

/// How long a pooled connection may sit idle before it is pinged on its way out of the pool.
pub(super) const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Connections of the pool of probes and checks (`pool`): the health probe and the schema
/// check, or the start-up checks, at a time. Statements run on the `Lanes` of `Database`.
const PROBE_CONNECTIONS: u32 = 2;

/// A lazily connecting pool of the primary (`DATABASE_URL`, in `pool_mode`) for probes and
/// checks: start-up and `/readyz` decide what to do while Postgres is down.
pub fn pool(url: &str, settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let size = settings.max_connections.min(PROBE_CONNECTIONS);
    Ok(
        pool_options(size, settings).connect_lazy_with(session_options(
            url,
            settings,
            settings.pool_mode,
        )?),
    )
}

/// What every session of the service sets, on the primary or a standby (always a session of
/// its own).
pub(in crate::store) fn session_options(
    url: &str,
    settings: &DatabaseSettings,
    mode: PoolMode,
) -> Result<PgConnectOptions, sqlx::Error> {
    let options = url
        .parse::<PgConnectOptions>()?
        .application_name("agent-api");
    Ok(match mode {
        PoolMode::Session => options.options([
            (
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            ),
            // The statements are written to plan well without their parameters' values, so
            // each is planned once per connection instead of on every execution.
            ("plan_cache_mode", "force_generic_plan".to_string()),
        ]),
        // A transaction pooler forwards no `options`; statements are unnamed (`Session`) and
        // none is kept.
        PoolMode::Transaction => options.statement_cache_capacity(0),
    })
}

/// How the service's pools keep their connections.
fn pool_options(max_connections: u32, settings: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(settings.min_connections.min(max_connections))
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // sqlx pings every connection on release, and by default on acquire too: a round trip
        // to Postgres per request beside the statement. A connection just released was proven
        // then; only one left idle a while (a restart or a firewall may have cut it meanwhile)
        // is pinged before use.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How long a connection asked for at `started` was waited for.
pub(super) fn record_acquired(started: Instant) {
    metrics::histogram!("agent_api_db_pool_acquire_seconds")
        .record(started.elapsed().as_secs_f64());
}

/// Runs one statement on `server` (`primary`, `standby`), recording how long it took
/// (`agent_api_db_query_duration_seconds`), in a span of its own for traces (OpenTelemetry's
/// database conventions).
pub(in crate::store) async fn timed<T>(
    statement: &'static str,
    server: &'static str,
    query: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let span = tracing::debug_span!(
        "statement",
        "otel.name" = statement,
        "otel.kind" = "client",
        "db.system.name" = "postgresql",
        "db.query.summary" = statement,
        "agent_api.db.server" = server,
        "db.response.returned_rows" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
    );
    let started = Instant::now();
    let outcome = query.instrument(span.clone()).await;
    if let Err(error) = &outcome {
        span.record("error.type", error_type(error));
    }
    metrics::histogram!("agent_api_db_query_duration_seconds", "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// `rows`, counted on the span of the statement that returned them (`timed`'s), for traces.
pub(in crate::store) fn returned<T>(rows: Vec<T>) -> Vec<T> {
    tracing::Span::current().record("db.response.returned_rows", rows.len() as i64);
    rows
}

/// The SQLSTATE of a database error, else what kind of failure it was.
fn error_type(error: &sqlx::Error) -> String {
    match error.as_database_error().and_then(|error| error.code()) {
        Some(code) => code.into_owned(),
        None => "connection".to_string(),
    }
}

/// One request waiting for a pooled connection; counted down even when the request is
/// abandoned mid-wait.
pub(super) struct Waiting(metrics::Gauge);

impl Waiting {
    pub(super) fn begin() -> Self {
        let gauge = metrics::gauge!("agent_api_db_pool_waiting");
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What to do when `DATABASE_URL` turns out to reach a transaction pooler.
pub const TRANSACTION_POOLER_ADVICE: &str = "DATABASE_URL reaches a transaction pooler \
    (PgBouncer); `migrate` needs DATABASE_URL naming Postgres itself, and `serve` behind the \
    pooler needs APP__DATABASE__POOL_MODE=transaction and DATABASE_FEED_URL naming Postgres itself";

/// In session mode (the default), whether each connection is one server session of its own with
/// the settings sent at connection in force. A transaction pooler that drops those settings
/// (`ignore_startup_parameters = options`, common for other clients) would otherwise let
/// `serve` start and say it is ready, then answer 500s (its named statements colliding on
/// shared sessions) without its timeout: the reason, if it is not so. Asked on two
/// connections, each twice, in the simple protocol; a pooler hands an idle session to the next
/// client, so the two report the same backend.
pub async fn session_mode_not_in_force(
    pool: &PgPool,
    settings: &DatabaseSettings,
) -> Result<Option<String>, sqlx::Error> {
    const ASK: &str = "select pg_backend_pid()::text, current_setting('plan_cache_mode'), \
        (select setting from pg_settings where name = 'statement_timeout')";
    let mut first = pool.acquire().await?;
    // A pool of one asks its one connection four times.
    let mut second = match pool.options().get_max_connections() {
        2.. => Some(pool.acquire().await?),
        _ => None,
    };
    let mut backends = Vec::new();
    for turn in 0..4 {
        let connection = match (turn % 2, second.as_mut()) {
            (1, Some(second)) => second,
            _ => &mut first,
        };
        let row = sqlx::raw_sql(ASK).fetch_one(&mut **connection).await?;
        let (backend, plans, timeout): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if plans != "force_generic_plan" || timeout != settings.statement_timeout_ms.to_string() {
            return Ok(Some(format!(
                "the settings sent at connection are not in force (plan_cache_mode {plans}, \
                 statement_timeout {timeout} ms)"
            )));
        }
        backends.push(backend);
    }
    let (one, other) = (&backends[0], &backends[1]);
    let shared = second.is_some() && one == other;
    Ok(if shared || backends[2] != *one || backends[3] != *other {
        Some("two connections shared a server session, or one changed sessions".to_string())
    } else {
        None
    })
}

/// A round trip to the database, for `/readyz`: the simple protocol, as every statement made
/// outside a `Session` (one message, whatever pooler is in between).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("select 1").execute(pool).await.map(drop)
}
