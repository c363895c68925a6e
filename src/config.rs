//! Settings: built-in defaults < optional TOML file < environment (SPEC §5).
//!
//! Environment names are `APP__<SECTION>__<KEY>` (for example `APP__SERVER__PORT`), plus the
//! conventional `DATABASE_URL`. Every setting is listed with its default in `.env.example`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::query::PageLimits;

/// Where `load` looks for a file when none is named; a missing default file is not an error.
pub const DEFAULT_CONFIG_FILE: &str = "config/agent-api.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub ops: OpsSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub api: ApiSettings,
    pub legacy: LegacySettings,
    pub rate_limit: RateLimitSettings,
    pub listing_cache: ListingCacheSettings,
    #[serde(default)]
    pub tls: TlsSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Connections a worker holds open at most; more wait to be accepted.
    pub max_connections_per_worker: usize,
    /// How long SIGTERM waits for in-flight requests before closing them.
    pub shutdown_grace_seconds: u64,
    pub keep_alive_seconds: u64,
    /// A client must have sent its whole request head within this time.
    pub client_request_timeout_ms: u64,
}

/// The operations listener: `/metrics`, `/healthz`, `/readyz`, apart from the partners' port.
#[derive(Debug, Clone, Deserialize)]
pub struct OpsSettings {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// From `DATABASE_URL`; only the subcommands that touch the database require it.
    pub url: Option<SecretString>,
    /// From `DATABASE_FEED_URL`: a direct session with the primary for the change feed's
    /// `LISTEN`, when `DATABASE_URL` goes through a transaction pooler. Defaults to `DATABASE_URL`.
    pub feed_url: Option<SecretString>,
    /// From `DATABASE_REPLICA_URLS` (comma-separated): hot standbys for cache-miss reads.
    pub replica_urls: Vec<SecretString>,
    /// Connections kept per standby.
    pub replica_max_connections: u32,
    /// How long a read waits for a standby to replay to its watermark before reading the
    /// primary instead (the standby is then passed over until it catches up).
    pub replica_max_wait_ms: u64,
    /// How often a standby that is down or lagging is tried again.
    pub replica_retry_ms: u64,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout_ms: u64,
    /// Postgres `statement_timeout` for every connection of the pool.
    pub statement_timeout_ms: u64,
    /// At start-up, how long `serve` waits for the database to come up before giving up.
    pub startup_wait_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret (at least 32 bytes); its tokens carry no `kid` or `kid = "default"`.
    pub jwt_secret: Option<SecretString>,
    /// Further keys, selected by a token's `kid` (rotation without downtime).
    pub keys: Vec<KeySettings>,
    /// The `kid` that `token issue` signs with when none is given.
    pub signing_kid: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    /// Lifetime of tokens from `token issue` when `--ttl` is not given (e.g. `30d`).
    pub default_ttl: String,
}

/// A verification key; a private key may be added so `token issue` can sign with it.
#[derive(Debug, Clone, Deserialize)]
pub struct KeySettings {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// HS256 only: the shared secret.
    pub secret: Option<SecretString>,
    /// RS256/ES256/EdDSA: the public key, inline PEM or a path to a PEM file.
    pub public_key: Option<String>,
    /// Optional, inline PEM or a path: lets `token issue --kid` sign with this key.
    pub private_key: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyAlgorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

impl KeyAlgorithm {
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    pub default_per_page: i64,
    pub max_per_page: i64,
    /// IANA zone in which timestamps are rendered (`YYYY-MM-DD HH:MM:SS`).
    pub display_timezone: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacyMode {
    /// Served until `sunset_at`, gone after it.
    Auto,
    /// Served whatever the date.
    On,
    /// Gone.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LegacySettings {
    pub callerline: LegacyMode,
    pub sunset_at: DateTime<FixedOffset>,
    pub deprecated_at: DateTime<FixedOffset>,
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

#[derive(Debug, Clone, Deserialize)]
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
    pub redis_url: Option<SecretString>,
    /// Every Redis call is given up after this long (and the instance falls back).
    pub redis_timeout_ms: u64,
    /// How many instances share the quota: while Redis does not answer, each allows its share.
    pub instances: u32,
}

impl RateLimitSettings {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// What is kept in memory while the database's change feed is proven to hear: rendered
/// caller-line pages (when enabled), partners' standing and the default tenant.
#[derive(Debug, Clone, Deserialize)]
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

impl ListingCacheSettings {
    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsSettings {
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `json` (default) or `pretty`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `agent_api=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A setting that is missing or cannot be used; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads settings from defaults, `file` (or the default file when present) and the process
    /// environment, then checks what serde cannot.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, env)
    }

    /// `load` with an explicit environment, so callers and tests need not touch the process's.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let file_source = match file {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name(DEFAULT_CONFIG_FILE).required(false),
        };
        let built = defaults()?
            .add_source(file_source)
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("rate_limit.trusted_proxies")
                    .source(Some(env.clone().into_iter().collect())),
            )
            .set_override_option("database.url", env.get("DATABASE_URL").cloned())
            .map_err(describe)?
            .set_override_option("database.feed_url", env.get("DATABASE_FEED_URL").cloned())
            .map_err(describe)?
            .set_override_option(
                "database.replica_urls",
                env.get("DATABASE_REPLICA_URLS").map(|urls| {
                    urls.split(',')
                        .map(str::trim)
                        .filter(|url| !url.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                }),
            )
            .map_err(describe)?
            .build()
            .map_err(describe)?;
        let settings: Settings = built.try_deserialize().map_err(describe)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return Err(ConfigError(
                "auth.jwt_secret (APP__AUTH__JWT_SECRET) must be at least 32 bytes".into(),
            ));
        }
        if !(1..=10_000).contains(&self.api.max_per_page) {
            return Err(ConfigError(
                "api.max_per_page must be between 1 and 10000".into(),
            ));
        }
        if !(1..=self.api.max_per_page).contains(&self.api.default_per_page) {
            return Err(ConfigError(
                "api.default_per_page must be between 1 and api.max_per_page".into(),
            ));
        }
        if self.database.max_connections == 0 || self.database.replica_max_connections == 0 {
            return Err(ConfigError(
                "database.max_connections and database.replica_max_connections must be at least 1"
                    .into(),
            ));
        }
        if self.rate_limit.per_second == 0
            || self.rate_limit.burst == 0
            || self.rate_limit.anonymous_per_second == 0
            || self.rate_limit.anonymous_burst == 0
        {
            return Err(ConfigError(
                "rate_limit rates and bursts must be at least 1 (set rate_limit.enabled = false to turn limiting off)".into(),
            ));
        }
        if self.rate_limit.instances == 0 || self.rate_limit.redis_timeout_ms == 0 {
            return Err(ConfigError(
                "rate_limit.instances and rate_limit.redis_timeout_ms must be at least 1".into(),
            ));
        }
        if self.listing_cache.max_bytes < 64 * 1024 {
            return Err(ConfigError(
                "listing_cache.max_bytes must be at least 65536 (set listing_cache.enabled = false to keep no pages)".into(),
            ));
        }
        if self.listing_cache.max_staleness_ms < 100 {
            return Err(ConfigError(
                "listing_cache.max_staleness_ms must be at least 100".into(),
            ));
        }
        if !(self.listing_cache.max_partner_share > 0.0
            && self.listing_cache.max_partner_share <= 1.0)
        {
            return Err(ConfigError(
                "listing_cache.max_partner_share must be above 0 and at most 1".into(),
            ));
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return Err(ConfigError(
                "tls.cert_path (APP__TLS__CERT_PATH) and tls.key_path (APP__TLS__KEY_PATH) must be set together".into(),
            ));
        }
        self.auth.default_ttl()?;
        Ok(())
    }

    /// The database URL, or the error that names the missing setting.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.database
            .url
            .as_ref()
            .map(|url| url.expose_secret())
            .ok_or_else(|| ConfigError("DATABASE_URL is required".into()))
    }
}

impl ApiSettings {
    pub fn page_limits(&self) -> PageLimits {
        PageLimits {
            default_per_page: self.default_per_page,
            max_per_page: self.max_per_page,
        }
    }
}

impl AuthSettings {
    pub fn default_ttl(&self) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.default_ttl).map_err(|e| {
            ConfigError(format!(
                "auth.default_ttl {:?} is not a duration: {e}",
                self.default_ttl
            ))
        })
    }
}

fn defaults() -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let workers = 0_i64;
    config::Config::builder()
        .set_default("server.host", "0.0.0.0")?
        .set_default("server.port", 8080)?
        .set_default("server.workers", workers)?
        .set_default("server.max_connections_per_worker", 4_096)?
        .set_default("server.shutdown_grace_seconds", 30)?
        .set_default("server.keep_alive_seconds", 75)?
        .set_default("server.client_request_timeout_ms", 5_000)?
        .set_default("ops.host", "127.0.0.1")?
        .set_default("ops.port", 8081)?
        .set_default("database.max_connections", 10)?
        .set_default("database.min_connections", 1)?
        .set_default("database.acquire_timeout_ms", 2_000)?
        .set_default("database.statement_timeout_ms", 5_000)?
        .set_default("database.startup_wait_seconds", 60)?
        .set_default("database.replica_urls", Vec::<String>::new())?
        .set_default("database.replica_max_connections", 10)?
        .set_default("database.replica_max_wait_ms", 20)?
        .set_default("database.replica_retry_ms", 1_000)?
        .set_default("auth.keys", Vec::<String>::new())?
        .set_default("auth.leeway_seconds", 30)?
        .set_default("auth.default_ttl", "30d")?
        .set_default("api.default_per_page", 15)?
        .set_default("api.max_per_page", 100)?
        .set_default("api.display_timezone", "Asia/Shanghai")?
        .set_default("legacy.callerline", "auto")?
        .set_default("legacy.sunset_at", "2023-02-01T00:00:00+08:00")?
        .set_default("legacy.deprecated_at", "2022-06-01T00:00:00+08:00")?
        .set_default("rate_limit.enabled", true)?
        .set_default("rate_limit.per_second", 20)?
        .set_default("rate_limit.burst", 40)?
        .set_default("rate_limit.anonymous_per_second", 5)?
        .set_default("rate_limit.anonymous_burst", 20)?
        .set_default("rate_limit.trusted_proxies", Vec::<String>::new())?
        .set_default("rate_limit.redis_timeout_ms", 25)?
        .set_default("rate_limit.instances", 1)?
        .set_default("listing_cache.enabled", true)?
        .set_default("listing_cache.max_bytes", 16 * 1024 * 1024)?
        .set_default("listing_cache.max_partner_share", 0.25)?
        .set_default("listing_cache.max_staleness_ms", 2_000)?
        .set_default("log.format", "json")?
        .set_default("log.level", "info")
        .map_err(describe)
}

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        describe(error)
    }
}

fn describe(error: config::ConfigError) -> ConfigError {
    ConfigError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![("APP__AUTH__JWT_SECRET".to_string(), "x".repeat(32))];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    #[test]
    fn defaults_match_the_spec() {
        let settings = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(settings.server.host, "0.0.0.0");
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.legacy.callerline, LegacyMode::Auto);
        assert_eq!(
            settings.legacy.sunset_at.to_rfc3339(),
            "2023-02-01T00:00:00+08:00"
        );
        assert!(settings.rate_limit.enabled);
        assert!(settings.listing_cache.enabled);
        assert_eq!(settings.listing_cache.max_bytes, 16 * 1024 * 1024);
        assert_eq!(settings.api.default_per_page, 15);
        assert_eq!(settings.api.max_per_page, 100);
        assert_eq!(settings.api.display_timezone, chrono_tz::Asia::Shanghai);
        assert!(settings.database.url.is_none());
    }

    #[test]
    fn environment_overrides_defaults() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("APP__SERVER__PORT", "9090"),
                ("APP__LEGACY__CALLERLINE", "on"),
                ("APP__RATE_LIMIT__ENABLED", "false"),
                ("DATABASE_URL", "postgres://localhost/x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.port, 9090);
        assert_eq!(settings.legacy.callerline, LegacyMode::On);
        assert!(!settings.rate_limit.enabled);
        assert_eq!(settings.database_url().unwrap(), "postgres://localhost/x");
    }

    #[test]
    fn bad_settings_are_named_in_the_error() {
        let cases = [
            (vec![("APP__SERVER__PORT", "eighty")], "server.port"),
            (
                vec![("APP__LEGACY__CALLERLINE", "maybe")],
                "legacy.callerline",
            ),
            (
                vec![("APP__LEGACY__SUNSET_AT", "tomorrow")],
                "legacy.sunset_at",
            ),
            (vec![("APP__AUTH__JWT_SECRET", "short")], "jwt_secret"),
            (
                vec![("APP__API__DISPLAY_TIMEZONE", "Mars/Olympus")],
                "display_timezone",
            ),
            (
                vec![("APP__TLS__CERT_PATH", "/tmp/cert.pem")],
                "tls.key_path",
            ),
            (
                vec![("APP__LISTING_CACHE__MAX_BYTES", "1000")],
                "listing_cache.max_bytes",
            ),
        ];
        for (pairs, named) in cases {
            let error = Settings::load_from(None, env(&pairs))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(named),
                "{pairs:?}: {error:?} should name {named}"
            );
        }
    }

    #[test]
    fn settings_load_without_a_secret_for_the_commands_that_sign_nothing() {
        let settings = Settings::load_from(None, Vec::new()).unwrap();
        assert!(settings.auth.jwt_secret.is_none());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let settings = Settings::load_from(
            None,
            env(&[("DATABASE_URL", "postgres://user:hunter2@db/x")]),
        )
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(&"x".repeat(32)), "{printed}");
    }
}
