//! The database's settings: the service's connections (`DatabaseSettings`, with how they reach
//! Postgres: `PoolMode`) and `agent-api migrate`'s own session (`MigrateSettings`).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::sections::{check, one_of};
use super::{ConfigError, secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`; only the subcommands that touch the database require it.
    #[serde(serialize_with = "secret::serialize")]
    pub url: Option<SecretString>,
    /// `DATABASE_FEED_URL`: a direct session with the primary for the change feed's `LISTEN`,
    /// when `DATABASE_URL` goes through a transaction pooler. Defaults to `DATABASE_URL`.
    #[serde(serialize_with = "secret::serialize")]
    pub feed_url: Option<SecretString>,
    /// `DATABASE_REPLICA_URLS` (comma-separated): hot standbys for cache-miss reads.
    #[serde(serialize_with = "secret::serialize_all")]
    pub replica_urls: Vec<SecretString>,
    /// Connections kept per standby.
    pub replica_max_connections: u32,
    /// How long a read waits for a standby to replay to its watermark before reading the
    /// primary instead (the standby is then passed over until it catches up).
    pub replica_max_wait_ms: u64,
    /// How often a standby that is down or lagging is tried again.
    pub replica_retry_ms: u64,
    /// A read on a standby (its connection, its wait for the watermark, its statement) that
    /// has not finished this long after it began goes to the primary, and the standby is
    /// passed over until a probe (bounded the same way) finds it fit.
    pub replica_deadline_ms: u64,
    /// How long a standby's connection, or the change feed's, may take to open.
    pub connect_timeout_ms: u64,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout_ms: u64,
    /// Postgres `statement_timeout` for every connection of the pool.
    pub statement_timeout_ms: u64,
    /// At start-up, how long `serve` waits for the database to come up before giving up.
    pub startup_wait_seconds: u64,
    /// What `DATABASE_URL` reaches: its own sessions (`session`: direct, or a session pooler)
    /// or a transaction pooler's (`transaction`: PgBouncer with `pool_mode = transaction`).
    pub pool_mode: PoolMode,
}

/// Whether the primary's sessions are the service's own between its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PoolMode {
    /// Direct, or through a session pooler: statements are prepared once per connection, and
    /// the session carries `statement_timeout`.
    Session,
    /// Through a transaction pooler: statements are unnamed, nothing is sent at connection but
    /// what PgBouncer forwards (set `statement_timeout` on the role), and the change feed needs
    /// a direct session (`DATABASE_FEED_URL`).
    Transaction,
}

impl TryFrom<String> for PoolMode {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        one_of(
            &value,
            &[
                ("session", Self::Session),
                ("transaction", Self::Transaction),
            ],
        )
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            feed_url: None,
            replica_urls: Vec::new(),
            replica_max_connections: 10,
            replica_max_wait_ms: 20,
            replica_retry_ms: 1_000,
            replica_deadline_ms: 500,
            connect_timeout_ms: 1_000,
            max_connections: 10,
            min_connections: 1,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
            startup_wait_seconds: 60,
            pool_mode: PoolMode::Session,
        }
    }
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_connections >= 1,
            "database.max_connections",
            "must be at least 1",
        )?;
        check(
            self.replica_max_connections >= 1,
            "database.replica_max_connections",
            "must be at least 1",
        )?;
        check(
            self.pool_mode == PoolMode::Session || self.feed_url.is_some(),
            "database.feed_url",
            "is required with APP__DATABASE__POOL_MODE=transaction: LISTEN needs a direct \
             session with the primary",
        )
    }
}

/// `agent-api migrate`'s own session, never the service's: migrations take what they take, but
/// wait for a lock only so long (the reads queued behind a waiting migration wait with it), and
/// are tried again when a lock did not come in time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrateSettings {
    /// `statement_timeout` of a migration's statements; 0: none.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of each statement: how long it may wait for a lock.
    pub lock_timeout_ms: u64,
    /// How many more times a migration whose lock did not come is tried.
    pub retries: u32,
    /// The wait before the first retry; it doubles with each, up to a minute.
    pub retry_wait_ms: u64,
}

impl Default for MigrateSettings {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 0,
            lock_timeout_ms: 3_000,
            retries: 5,
            retry_wait_ms: 2_000,
        }
    }
}

impl MigrateSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.lock_timeout_ms >= 1,
            "migrate.lock_timeout_ms",
            "must be at least 1 (a migration must not wait for a lock for ever)",
        )
    }

    /// The wait before retry `n` (1, 2, …).
    pub fn retry_wait(&self, n: u32) -> Duration {
        let doubled = self
            .retry_wait_ms
            .saturating_mul(1 << (n.saturating_sub(1)).min(16));
        Duration::from_millis(doubled.min(60_000))
    }
}
