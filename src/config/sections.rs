//! Every section of the settings (the database's and `migrate`'s in `database`, the keys' in
//! `auth`): its fields, their defaults (`Default`) and what serde cannot check (`validate`),
//! side by side, so a setting is written once. Each field is the
//! environment variable `APP__<SECTION>__<FIELD>` (`super::env_name`), listed with its default
//! in `.env.example` (a test holds the two in agreement).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::query::PageLimits;

/// Fails with `message` about `key` (a `section.field` path) unless `holds`.
pub(super) fn check(holds: bool, key: &str, message: &str) -> Result<(), ConfigError> {
    match holds {
        true => Ok(()),
        false => Err(ConfigError::about(key, message)),
    }
}

/// One of a few words, case-insensitively; an error lists them (never a Rust type's name).
pub(super) fn one_of<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
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
