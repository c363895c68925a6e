//! Token buckets (GCRA, SPEC §2's 429): one per partner, and one per client address, charged by
//! requests whose token is refused. In this process (`local`), or, with `rate_limit.redis_url`,
//! shared by every instance in Redis (`shared`): while Redis does not answer, each instance
//! falls back to buckets of its own at quota ÷ `rate_limit.instances`, says so once, and goes
//! back to the shared ones as soon as Redis answers again.

mod local;
mod shared;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uuid::Uuid;

use crate::background::Background;
use crate::config::{ConfigError, RateLimitSettings};
use local::Buckets;
use shared::SharedBuckets;

/// Over the limit; try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl From<Duration> for RetryAfter {
    fn from(wait: Duration) -> Self {
        Self((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }
}

/// `per_second` sustained, and `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

impl Quota {
    /// The share of one instance of `instances`, never below one request.
    fn divided(self, instances: u32) -> Self {
        Self {
            per_second: (self.per_second / instances.max(1)).max(1),
            burst: (self.burst / instances.max(1)).max(1),
        }
    }

    fn interval_micros(self) -> u64 {
        1_000_000 / u64::from(self.per_second.max(1))
    }

    /// How far ahead of now a bucket may run: `burst` requests at once.
    fn tolerance_micros(self) -> u64 {
        self.interval_micros() * u64::from(self.burst.max(1) - 1)
    }
}

/// The bucket an address is charged to: an IPv4 address alone, an IPv6 address by its /64 (a
/// host is given a whole /64 and may rotate through it at will); a forwarded hop that is no
/// address by a hash of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
    Unreadable(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Prefix(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64))
            }
            Self::Unreadable(hash) => write!(f, "unreadable-{hash:016x}"),
        }
    }
}

/// The partner and address buckets of one quota each.
struct Local {
    partners: Buckets<Uuid>,
    addresses: Buckets<AddressKey>,
}

impl Local {
    fn new(partner: Quota, address: Quota) -> Self {
        Self {
            partners: Buckets::new(partner),
            addresses: Buckets::new(address),
        }
    }

    fn forget_idle(&self) {
        self.partners.forget_idle();
        self.addresses.forget_idle();
    }
}

struct Shared {
    buckets: SharedBuckets,
    /// Quota ÷ instances, while Redis does not answer.
    fallback: Local,
    /// Whether the shared buckets are in use (Redis answered last time it was asked).
    in_use: AtomicBool,
    /// Where the probe runs while Redis does not answer.
    background: Background,
}

pub struct RateLimits {
    partner: Quota,
    address: Quota,
    /// The buckets without Redis.
    local: Local,
    shared: Option<Arc<Shared>>,
}

/// Where the buckets are now, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// In this process: no Redis is configured.
    Local,
    /// In Redis, shared by every instance.
    Shared,
    /// In this process at quota ÷ instances, while Redis does not answer.
    Fallback,
}

impl RateLimits {
    /// `None` when rate limiting is turned off.
    pub fn from_settings(
        settings: &RateLimitSettings,
        background: &Background,
    ) -> Result<Option<Self>, ConfigError> {
        if !settings.enabled {
            return Ok(None);
        }
        let partner = Quota {
            per_second: settings.per_second,
            burst: settings.burst,
        };
        let address = Quota {
            per_second: settings.anonymous_per_second,
            burst: settings.anonymous_burst,
        };
        // Validated: `instances` is set wherever Redis is.
        let instances = settings.instances.unwrap_or(1);
        let shared = match &settings.redis_url {
            None => None,
            Some(url) => Some(Arc::new(Shared {
                buckets: SharedBuckets::new(
                    url,
                    settings.redis_ca_path.as_deref(),
                    settings.redis_timeout(),
                )?,
                fallback: Local::new(partner.divided(instances), address.divided(instances)),
                in_use: AtomicBool::new(true),
                background: background.clone(),
            })),
        };
        if shared.is_some() {
            metrics::gauge!("agent_api_rate_limit_shared").set(1.0);
        }
        Ok(Some(Self {
            partner,
            address,
            local: Local::new(partner, address),
            shared,
        }))
    }

    pub async fn check_partner(&self, partner: Uuid) -> Result<(), RetryAfter> {
        let Some(shared) = &self.shared else {
            return self.local.partners.check(&partner);
        };
        let key = format!("agent-api:rl:partner:{partner}");
        self.check_shared(shared, &key, self.partner, |fallback| {
            fallback.partners.check(&partner)
        })
        .await
    }

    pub async fn check_address(&self, address: AddressKey) -> Result<(), RetryAfter> {
        let Some(shared) = &self.shared else {
            return self.local.addresses.check(&address);
        };
        let key = format!("agent-api:rl:addr:{address}");
        self.check_shared(shared, &key, self.address, |fallback| {
            fallback.addresses.check(&address)
        })
        .await
    }

    /// Asks Redis while it is in use; on its first silence falls back, says so once, and
    /// probes it every second until it answers again.
    async fn check_shared(
        &self,
        shared: &Arc<Shared>,
        key: &str,
        quota: Quota,
        fallback: impl FnOnce(&Local) -> Result<(), RetryAfter>,
    ) -> Result<(), RetryAfter> {
        if shared.in_use.load(Ordering::SeqCst) {
            match shared.buckets.check(key, quota).await {
                Ok(verdict) => return verdict,
                Err(_) if shared.in_use.swap(false, Ordering::SeqCst) => {
                    tracing::warn!(
                        "Redis does not answer: rate limits are this instance's own, at quota ÷ instances, until it does"
                    );
                    metrics::gauge!("agent_api_rate_limit_shared").set(0.0);
                    probe_until_answered(shared.clone());
                }
                Err(_) => {}
            }
        }
        metrics::counter!("agent_api_rate_limit_fallback_total").increment(1);
        fallback(&shared.fallback)
    }

    /// Where the buckets are now.
    pub fn whereabouts(&self) -> Where {
        match &self.shared {
            None => Where::Local,
            Some(shared) if shared.in_use.load(Ordering::SeqCst) => Where::Shared,
            Some(_) => Where::Fallback,
        }
    }

    /// Forgets buckets that are full again, so memory tracks recent callers only.
    pub fn forget_idle(&self) {
        self.local.forget_idle();
        if let Some(shared) = &self.shared {
            shared.fallback.forget_idle();
        }
    }
}

fn probe_until_answered(shared: Arc<Shared>) {
    const EVERY: Duration = Duration::from_secs(1);
    shared.background.clone().spawn(async move {
        loop {
            tokio::time::sleep(EVERY).await;
            if shared.buckets.answers().await {
                shared.in_use.store(true, Ordering::SeqCst);
                metrics::gauge!("agent_api_rate_limit_shared").set(1.0);
                tracing::info!("Redis answers again: rate limits are shared again");
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str) -> AddressKey {
        address.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_ipv4_alone() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn a_quota_shared_by_instances_is_divided_and_never_nothing() {
        let quota = Quota {
            per_second: 20,
            burst: 40,
        };
        assert_eq!(
            quota.divided(3),
            Quota {
                per_second: 6,
                burst: 13
            }
        );
        assert_eq!(
            quota.divided(100),
            Quota {
                per_second: 1,
                burst: 1
            }
        );
        assert_eq!(quota.tolerance_micros(), 39 * 50_000);
    }
}
