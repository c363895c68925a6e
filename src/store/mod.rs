//! Everything that speaks SQL: the pool, migrations, and one module per table family.

pub mod caller_lines;
pub mod demo;
pub mod tenants;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::config::DatabaseSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What a verified token claims; the statements check it against `users` (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerToken {
    pub partner_id: Uuid,
    pub issued_at: DateTime<Utc>,
}

/// One page of a list and the number of matching rows.
#[derive(Debug)]
pub struct Listing<T> {
    pub total: i64,
    pub items: Vec<T>,
}

/// A lazily connecting pool: start-up and `/readyz` decide what to do while Postgres is down.
pub fn pool(url: &str, settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .application_name("agent-api")
        .options([(
            "statement_timeout",
            settings.statement_timeout_ms.to_string(),
        )]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_lazy_with(options))
}

/// Whether the token's partner may be served: exists, is a partner, not deleted, not revoked.
pub async fn partner_is_active(pool: &PgPool, token: PartnerToken) -> Result<bool, sqlx::Error> {
    timed(
        "partner_is_active",
        sqlx::query_scalar!(
            r#"select token_partner($1, $2) is not null as "active!""#,
            token.partner_id,
            token.issued_at,
        )
        .fetch_one(pool),
    )
    .await
}

/// Runs one statement and records its latency as `agent_api_db_query_duration_seconds`.
async fn timed<T>(statement: &'static str, query: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = query.await;
    metrics::histogram!("agent_api_db_query_duration_seconds", "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// A round trip to the database, for `/readyz`.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query!("select 1 as one")
        .fetch_one(pool)
        .await
        .map(drop)
}
