//! The rate limits: per partner and per client address, in the process or shared in Redis,
//! and which balancers' `X-Forwarded-For` names the client.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::sections::check;
use super::{ConfigError, secret};

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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
