//! What the change feed has said, kept so that anything held in memory can tell whether it is
//! still current: a sequence number per announcement, and for each scope the number of the last
//! announcement that named it. A value read while the sequence stood at `s` is current while no
//! scope it depends on has been named after `s`.
//!
//! Memory is trusted only while the feed is proven alive: a heartbeat sent at `t` and heard back
//! proves every commit before `t` was heard, so memory is trusted until `t + max_staleness`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::store::changes::{Change, Scope};
use crate::store::reads::Watermark;

/// Scopes remembered at most; past it they are forgotten at once by a change of everything.
const MAX_REMEMBERED_SCOPES: usize = 100_000;

/// The announcement count when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

#[derive(Default)]
struct Named {
    pairs: HashMap<(Uuid, Uuid), u64>,
    partners: HashMap<Uuid, u64>,
    tenants: HashMap<Uuid, u64>,
}

pub struct Freshness {
    /// Announcements applied so far. Written by the feed alone, after the stamps it publishes.
    sequence: AtomicU64,
    everything: AtomicU64,
    /// The last announcement naming any tenant: which one is the default may have changed.
    any_tenant: AtomicU64,
    named: RwLock<Named>,
    listening: AtomicBool,
    /// Nanoseconds after `epoch` until which memory is trusted.
    trusted_until: AtomicU64,
    epoch: Instant,
    max_staleness: Duration,
    /// The primary's WAL position that replica reads must have replayed, in bytes.
    watermark: AtomicU64,
    /// Set from an announcement until the position after it is known.
    watermark_pending: AtomicBool,
    /// Woken when the default tenant may have changed.
    pub tenants_changed: Notify,
}

impl Freshness {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            sequence: AtomicU64::new(0),
            everything: AtomicU64::new(0),
            any_tenant: AtomicU64::new(0),
            named: RwLock::default(),
            listening: AtomicBool::new(false),
            trusted_until: AtomicU64::new(0),
            epoch: Instant::now(),
            max_staleness,
            watermark: AtomicU64::new(0),
            watermark_pending: AtomicBool::new(true),
            tenants_changed: Notify::new(),
        }
    }

    /// Whether memory may answer now: the feed listens and was proven alive lately.
    pub fn is_trusted(&self) -> bool {
        self.listening.load(SeqCst) && self.nanos(Instant::now()) < self.trusted_until.load(SeqCst)
    }

    /// Taken before a read: what it reads may be kept if nothing it shows changes meanwhile.
    pub fn stamp(&self) -> Stamp {
        Stamp(self.sequence.load(SeqCst))
    }

    /// Whether a page of `partner` on `tenant` read at `stamp` is still current.
    pub fn page_is_current(&self, partner: Uuid, tenant: Uuid, stamp: Stamp) -> bool {
        let Stamp(read_at) = stamp;
        if self.everything.load(SeqCst) > read_at {
            return false;
        }
        let named = self.named.read().expect("no writer panics");
        [
            named.pairs.get(&(partner, tenant)),
            named.partners.get(&partner),
            named.tenants.get(&tenant),
        ]
        .into_iter()
        .all(|changed| changed.is_none_or(|&changed| changed <= read_at))
    }

    /// Whether a partner's standing read at `stamp` is still current.
    pub fn partner_is_current(&self, partner: Uuid, stamp: Stamp) -> bool {
        let Stamp(read_at) = stamp;
        self.everything.load(SeqCst) <= read_at
            && self
                .named
                .read()
                .expect("no writer panics")
                .partners
                .get(&partner)
                .is_none_or(|&changed| changed <= read_at)
    }

    /// Whether which tenant is the default, read at `stamp`, is still current.
    pub fn default_tenant_is_current(&self, stamp: Stamp) -> bool {
        let Stamp(read_at) = stamp;
        self.everything.load(SeqCst) <= read_at && self.any_tenant.load(SeqCst) <= read_at
    }

    /// The WAL position a standby must have replayed before it may answer a read that began
    /// now (take the stamp first), or why none may: memory is not trusted (a standby could miss
    /// commits the feed did not hear), or the position after the latest change is not known yet.
    pub fn replica_watermark(&self) -> Watermark {
        if !self.is_trusted() {
            return Err("feed_not_trusted");
        }
        if self.watermark_pending.load(SeqCst) {
            return Err("position_pending");
        }
        Ok(self.watermark.load(SeqCst))
    }

    /// Follows the change feed; called by the feed's task alone.
    pub fn apply(&self, change: Change) {
        let next = self.sequence.load(SeqCst) + 1;
        match change {
            Change::Listening { position } => {
                if let Some(position) = position {
                    self.watermark.fetch_max(position, SeqCst);
                    self.watermark_pending.store(false, SeqCst);
                }
                // Whatever was committed while nobody listened is unknown: everything changed.
                self.everything.store(next, SeqCst);
                self.sequence.store(next, SeqCst);
                self.listening.store(true, SeqCst);
                self.tenants_changed.notify_one();
            }
            Change::Changed(scope) => {
                self.watermark_pending.store(true, SeqCst);
                self.name(scope, next);
                self.sequence.store(next, SeqCst);
            }
            Change::Position(position) => {
                self.watermark.fetch_max(position, SeqCst);
                self.watermark_pending.store(false, SeqCst);
            }
            Change::Heard { sent } => {
                let until = self.nanos(sent + self.max_staleness);
                self.trusted_until.fetch_max(until, SeqCst);
            }
            Change::Deaf => {
                self.listening.store(false, SeqCst);
                self.trusted_until.store(0, SeqCst);
                self.everything.store(next, SeqCst);
                self.sequence.store(next, SeqCst);
            }
        }
    }

    /// Records `scope` as changed by announcement `number`, before `number` is published.
    fn name(&self, scope: Scope, number: u64) {
        let mut named = self.named.write().expect("no writer panics");
        match scope {
            Scope::Pairs(pairs) => named.pairs.extend(pairs.into_iter().map(|p| (p, number))),
            Scope::Partners(partners) => named
                .partners
                .extend(partners.into_iter().map(|p| (p, number))),
            Scope::Tenants(tenants) => {
                named
                    .tenants
                    .extend(tenants.into_iter().map(|t| (t, number)));
                self.any_tenant.store(number, SeqCst);
                self.tenants_changed.notify_one();
            }
            Scope::Everything => self.everything.store(number, SeqCst),
        }
        let remembered = named.pairs.len() + named.partners.len() + named.tenants.len();
        if remembered > MAX_REMEMBERED_SCOPES {
            // Everything older than this announcement is out of date anyway.
            *named = Named::default();
            self.everything.store(number, SeqCst);
        }
    }

    fn nanos(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);
    const T: Uuid = Uuid::from_u128(10);
    const U: Uuid = Uuid::from_u128(11);

    fn live() -> Freshness {
        let freshness = Freshness::new(Duration::from_secs(2));
        freshness.apply(Change::Listening { position: None });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        freshness
    }

    #[test]
    fn memory_is_trusted_only_within_the_bound_of_the_last_heartbeat_heard() {
        let freshness = Freshness::new(Duration::from_secs(2));
        assert!(!freshness.is_trusted(), "not before it listens");
        freshness.apply(Change::Listening { position: None });
        assert!(!freshness.is_trusted(), "not before a heartbeat comes back");
        freshness.apply(Change::Heard {
            sent: Instant::now() - Duration::from_secs(3),
        });
        assert!(
            !freshness.is_trusted(),
            "a heartbeat older than the bound proves too little"
        );
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        assert!(freshness.is_trusted());
        freshness.apply(Change::Deaf);
        assert!(!freshness.is_trusted());
    }

    #[test]
    fn a_change_outdates_only_what_it_names() {
        let freshness = live();
        let before = freshness.stamp();
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        assert!(!freshness.page_is_current(P, T, before));
        assert!(
            freshness.page_is_current(P, U, before),
            "another tenant of P"
        );
        assert!(
            freshness.page_is_current(Q, T, before),
            "another partner on T"
        );
        assert!(
            freshness.partner_is_current(P, before),
            "lines are not standing"
        );
        assert!(
            freshness.page_is_current(P, T, freshness.stamp()),
            "read after it"
        );

        let before = freshness.stamp();
        freshness.apply(Change::Changed(Scope::Partners(vec![Q])));
        assert!(!freshness.page_is_current(Q, U, before));
        assert!(!freshness.partner_is_current(Q, before));
        assert!(freshness.page_is_current(P, U, before));
        assert!(freshness.default_tenant_is_current(before));

        let before = freshness.stamp();
        freshness.apply(Change::Changed(Scope::Tenants(vec![U])));
        assert!(!freshness.page_is_current(P, U, before));
        assert!(freshness.page_is_current(P, T, before));
        assert!(!freshness.default_tenant_is_current(before));

        let before = freshness.stamp();
        freshness.apply(Change::Changed(Scope::Everything));
        assert!(!freshness.page_is_current(P, T, before));
        assert!(!freshness.partner_is_current(P, before));
    }

    #[test]
    fn losing_the_feed_outdates_everything() {
        let freshness = live();
        let before = freshness.stamp();
        freshness.apply(Change::Deaf);
        freshness.apply(Change::Listening { position: None });
        assert!(!freshness.page_is_current(P, T, before));
        assert!(!freshness.partner_is_current(P, before));
        assert!(!freshness.default_tenant_is_current(before));
    }

    #[test]
    fn the_watermark_is_unknown_from_an_announcement_until_the_position_after_it() {
        let freshness = Freshness::new(Duration::from_secs(2));
        assert!(
            freshness.replica_watermark().is_err(),
            "unknown before listening"
        );
        freshness.apply(Change::Listening {
            position: Some(100),
        });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        assert_eq!(freshness.replica_watermark(), Ok(100));
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        assert_eq!(freshness.replica_watermark(), Err("position_pending"));
        freshness.apply(Change::Position(250));
        assert_eq!(freshness.replica_watermark(), Ok(250));
        freshness.apply(Change::Position(200));
        assert_eq!(freshness.replica_watermark(), Ok(250), "it never goes back");
        freshness.apply(Change::Deaf);
        assert_eq!(freshness.replica_watermark(), Err("feed_not_trusted"));
    }

    #[test]
    fn too_many_remembered_scopes_are_forgotten_as_a_change_of_everything() {
        let freshness = live();
        let before = freshness.stamp();
        let many = (0..=MAX_REMEMBERED_SCOPES as u128).map(|n| (Uuid::from_u128(n + 100), T));
        freshness.apply(Change::Changed(Scope::Pairs(many.collect())));
        assert!(!freshness.page_is_current(Q, U, before));
        assert!(freshness.page_is_current(Q, U, freshness.stamp()));
    }
}
