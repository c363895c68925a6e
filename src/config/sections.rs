//! Every section of the settings: its fields, their defaults (`Default`) and what serde cannot
//! check (`validate`), side by side, so a setting is written once. Each field is the
//! environment variable `APP__<SECTION>__<FIELD>` (`super::env_name`), listed with its default
//! in `.env.example` (a test holds the two in agreement).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, secret};
use crate::domain::query::PageLimits;

/// Fails with `message` about `key` (a `section.field` path) unless `holds`.
fn check(holds: bool, key: &str, message: &str) -> Result<(), ConfigError> {
    match holds {
        true => Ok(()),
        false => Err(ConfigError::about(key, message)),
    }
}

/// One of a few words, case-insensitively; an error lists them (never a Rust type's name).
fn one_of<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value.trim()))
        .map(|&(_, choice)| choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("{value:?} is not one of {}", names.join(", "))
        })
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Connections a worker holds open at most; more wait to be accepted.
    pub max_connections_per_worker: usize,
    /// How long SIGTERM waits for in-flight requests (and then background work) to finish.
    pub shutdown_grace_seconds: u64,
    pub keep_alive_seconds: u64,
    /// A client must have sent its whole request head within this time.
    pub client_request_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            workers: 0,
            max_connections_per_worker: 4_096,
            shutdown_grace_seconds: 30,
            keep_alive_seconds: 75,
            client_request_timeout_ms: 5_000,
        }
    }
}

/// The operations listener: `/metrics`, `/healthz`, `/readyz`, apart from the partners' port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    pub host: String,
    pub port: u16,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8081,
        }
    }
}

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
    fn validate(&self) -> Result<(), ConfigError> {
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
    fn validate(&self) -> Result<(), ConfigError> {
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (at least 32 bytes); its tokens carry no `kid` or `kid = "default"`.
    #[serde(serialize_with = "secret::serialize")]
    pub jwt_secret: Option<SecretString>,
    /// Further keys, selected by a token's `kid` (rotation without downtime): the settings
    /// file only, since a list of keys has no environment form.
    #[serde(skip_serializing)]
    pub keys: Vec<KeySettings>,
    /// The `kid` that `token issue` signs with when none is given.
    pub signing_kid: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    /// Lifetime of tokens from `token issue` when `--ttl` is not given (e.g. `30d`).
    pub default_ttl: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            keys: Vec::new(),
            signing_kid: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            default_ttl: "30d".into(),
        }
    }
}

/// Secrets printed in this project's own documents: whoever copies one has no secret at all.
pub const PUBLISHED_SECRETS: [&str; 1] = ["change-me-to-at-least-32-random-bytes"];

impl AuthSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            let secret = secret.expose_secret();
            check(
                secret.len() >= 32,
                "auth.jwt_secret",
                "must be at least 32 bytes",
            )?;
            check(
                !PUBLISHED_SECRETS.contains(&secret),
                "auth.jwt_secret",
                "is the example from .env.example: set 32 random bytes or more \
                 (e.g. openssl rand -hex 32)",
            )?;
        }
        self.default_ttl().map(drop)
    }

    pub fn default_ttl(&self) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.default_ttl).map_err(|error| {
            ConfigError::about(
                "auth.default_ttl",
                &format!(
                    "{:?} is not a duration such as 1h or 30d: {error}",
                    self.default_ttl
                ),
            )
        })
    }
}

/// A verification key, selected by a token's `kid`; its algorithm is fixed here, never taken
/// from the token. A private key (or the shared secret) also lets `token issue` sign with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "algorithm", deny_unknown_fields)]
pub enum KeySettings {
    HS256 { kid: String, secret: SecretString },
    RS256(PublicKeySettings),
    ES256(PublicKeySettings),
    EdDSA(PublicKeySettings),
}

impl KeySettings {
    pub fn kid(&self) -> &str {
        match self {
            Self::HS256 { kid, .. } => kid,
            Self::RS256(key) | Self::ES256(key) | Self::EdDSA(key) => &key.kid,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeySettings {
    pub kid: String,
    /// Inline PEM, or the path of a PEM file.
    pub public_key: String,
    /// Inline PEM, or a path: where tokens are issued with this key.
    pub private_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub default_per_page: i64,
    pub max_per_page: i64,
    /// IANA zone in which timestamps are rendered (`YYYY-MM-DD HH:MM:SS`).
    pub display_timezone: Tz,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            default_per_page: 15,
            max_per_page: 100,
            display_timezone: chrono_tz::Asia::Shanghai,
        }
    }
}

impl ApiSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=10_000).contains(&self.max_per_page),
            "api.max_per_page",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=self.max_per_page).contains(&self.default_per_page),
            "api.default_per_page",
            "must be between 1 and APP__API__MAX_PER_PAGE",
        )
    }

    pub fn page_limits(&self) -> PageLimits {
        PageLimits {
            default_per_page: self.default_per_page,
            max_per_page: self.max_per_page,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LegacyMode {
    /// Served until `sunset_at`, gone after it.
    Auto,
    /// Served whatever the date.
    On,
    /// Gone.
    Off,
}

impl TryFrom<String> for LegacyMode {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        one_of(
            &value,
            &[("auto", Self::Auto), ("on", Self::On), ("off", Self::Off)],
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacySettings {
    pub callerline: LegacyMode,
    pub sunset_at: DateTime<FixedOffset>,
    pub deprecated_at: DateTime<FixedOffset>,
}

impl Default for LegacySettings {
    fn default() -> Self {
        let instant = |text| DateTime::parse_from_rfc3339(text).expect("a valid RFC 3339 instant");
        Self {
            callerline: LegacyMode::Auto,
            sunset_at: instant("2023-02-01T00:00:00+08:00"),
            deprecated_at: instant("2022-06-01T00:00:00+08:00"),
        }
    }
}

impl LegacySettings {
    /// Whether the route is served at `now`; from the sunset instant on, `auto` means gone.
    pub fn is_served(&self, now: DateTime<Utc>) -> bool {
        match self.callerline {
            LegacyMode::Auto => now < self.sunset_at,
            LegacyMode::On => true,
            LegacyMode::Off => false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Sustained requests per second per partner.
    pub per_second: u32,
    /// Requests a partner may send at once before the sustained rate applies.
    pub burst: u32,
    /// Requests that fail authentication are limited per client address at this rate.
    pub anonymous_per_second: u32,
    pub anonymous_burst: u32,
    /// Balancers (CIDRs) whose `X-Forwarded-For` names the client; the rightmost address there
    /// that is not one of them is the client. Empty: the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Redis shared by every instance for the buckets; unset: each instance has its own.
    /// `rediss://` speaks TLS; a user and password in it are Redis ACL's.
    #[serde(serialize_with = "secret::serialize")]
    pub redis_url: Option<SecretString>,
    /// The CA (PEM file) a `rediss://` server's certificate must chain to; unset: the
    /// system's trusted roots.
    pub redis_ca_path: Option<PathBuf>,
    /// Every Redis call is given up after this long (and the instance falls back).
    pub redis_timeout_ms: u64,
    /// How many instances share the quota: while Redis does not answer, each allows its
    /// share. Required with `redis_url`: a wrong guess multiplies every quota in an outage.
    pub instances: Option<u32>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 20,
            burst: 40,
            anonymous_per_second: 5,
            anonymous_burst: 20,
            trusted_proxies: Vec::new(),
            redis_url: None,
            redis_ca_path: None,
            redis_timeout_ms: 25,
            instances: None,
        }
    }
}

impl RateLimitSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("rate_limit.per_second", self.per_second),
            ("rate_limit.burst", self.burst),
            ("rate_limit.anonymous_per_second", self.anonymous_per_second),
            ("rate_limit.anonymous_burst", self.anonymous_burst),
        ] {
            check(
                value >= 1,
                key,
                "must be at least 1 (APP__RATE_LIMIT__ENABLED=false turns limiting off)",
            )?;
        }
        check(
            self.redis_timeout_ms >= 1,
            "rate_limit.redis_timeout_ms",
            "must be at least 1",
        )?;
        check(
            self.instances != Some(0),
            "rate_limit.instances",
            "must be at least 1",
        )?;
        check(
            !(self.enabled && self.redis_url.is_some() && self.instances.is_none()),
            "rate_limit.instances",
            "is required with APP__RATE_LIMIT__REDIS_URL: how many instances share the quota, \
             so that each allows its share while Redis does not answer",
        )
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// What is kept in memory while the database's change feed is proven to hear: rendered
/// caller-line pages (when enabled), partners' standing and the default tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListingCacheSettings {
    /// Whether rendered pages are kept; standing and the default tenant always are.
    pub enabled: bool,
    /// Bound on what kept pages cost in memory.
    pub max_bytes: u64,
    /// The most of `max_bytes` one partner's pages may take, from 0 to 1.
    pub max_partner_share: f64,
    /// Memory answers only while a heartbeat sent through the database within this time has
    /// come back on the feed; past it, every request reads the database.
    pub max_staleness_ms: u64,
}

impl Default for ListingCacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 16 * 1024 * 1024,
            max_partner_share: 0.25,
            max_staleness_ms: 2_000,
        }
    }
}

impl ListingCacheSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_bytes >= 64 * 1024,
            "listing_cache.max_bytes",
            "must be at least 65536 (APP__LISTING_CACHE__ENABLED=false keeps no pages)",
        )?;
        check(
            self.max_staleness_ms >= 100,
            "listing_cache.max_staleness_ms",
            "must be at least 100",
        )?;
        check(
            self.max_partner_share > 0.0 && self.max_partner_share <= 1.0,
            "listing_cache.max_partner_share",
            "must be above 0 and at most 1",
        )
    }

    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

impl TlsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.cert_path.is_some() == self.key_path.is_some(),
            "tls.key_path",
            "and APP__TLS__CERT_PATH must be set together",
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `agent_api=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        one_of(&value, &[("json", Self::Json), ("pretty", Self::Pretty)])
    }
}

/// Every section, checked.
pub(super) fn validate(settings: &super::Settings) -> Result<(), ConfigError> {
    settings.database.validate()?;
    settings.migrate.validate()?;
    settings.auth.validate()?;
    settings.api.validate()?;
    settings.rate_limit.validate()?;
    settings.listing_cache.validate()?;
    settings.tls.validate()
}
