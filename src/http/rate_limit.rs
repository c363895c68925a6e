//! Token buckets (GCRA, via `governor`): one per partner, and one per client address for
//! requests that fail authentication (SPEC §2's 429).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::config::RateLimitSettings;

pub struct RateLimits {
    partners: DefaultKeyedRateLimiter<Uuid>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
}

/// Over the limit; try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl RateLimits {
    /// `None` when rate limiting is turned off.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        let quota = |per_second: u32, burst: u32| {
            // Validated non-zero at load time.
            Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        settings.enabled.then(|| Self {
            partners: DefaultKeyedRateLimiter::keyed(quota(settings.per_second, settings.burst)),
            addresses: DefaultKeyedRateLimiter::keyed(quota(
                settings.anonymous_per_second,
                settings.anonymous_burst,
            )),
        })
    }

    pub fn check_partner(&self, partner: Uuid) -> Result<(), RetryAfter> {
        check(&self.partners, &partner)
    }

    pub fn check_address(&self, address: IpAddr) -> Result<(), RetryAfter> {
        check(&self.addresses, &address)
    }

    /// Forgets buckets that are full again, so memory tracks recent callers only.
    pub fn forget_idle(&self) {
        self.partners.retain_recent();
        self.addresses.retain_recent();
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), RetryAfter> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        RetryAfter((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    })
}
