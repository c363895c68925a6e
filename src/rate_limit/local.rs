//! Buckets kept in this process (`governor`'s GCRA), by key.

use std::hash::Hash;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::RetryAfter;

pub struct Buckets<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// `per_second` sustained, `burst` at once; both at least 1 (settings are validated).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            RetryAfter((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
        })
    }

    /// Forgets the buckets that are full again and gives their memory back: a stranger rotating
    /// addresses leaves nothing behind once it stops.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
