//! Buckets kept in this process (`governor`'s GCRA), by key.

use std::hash::Hash;
use std::num::NonZeroU32;

use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock, DefaultClock};

use super::{Quota, RetryAfter};

pub struct Buckets<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(quota: Quota) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::per_second(at_least_one(quota.per_second))
            .allow_burst(at_least_one(quota.burst));
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        self.limiter.check_key(key).map_err(|not_until| {
            RetryAfter::from(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Forgets the buckets that are full again and gives their memory back: a stranger rotating
    /// addresses leaves nothing behind once it stops.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
