//! What the change feed has said, kept so that anything held in memory can tell whether it is
//! still current: a sequence number per announcement, and for each scope the number of the last
//! announcement that named it. A value read under a ticket taken while the sequence stood at `s`
//! is current while nothing it depends on has been named after `s`.
//!
//! Memory is trusted only while the feed is proven alive: a heartbeat sent at `t` and heard back
//! proves every commit before `t` was heard, so memory is trusted until `t + max_staleness`.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::store::database::Watermark;
use crate::store::feed::announcements::Scope;
use crate::store::feed::changes::Change;

/// Scopes remembered at most; past it the oldest are forgotten (a tenth at a time), and values
/// read before the last one forgotten are taken as outdated.
const MAX_REMEMBERED_SCOPES: usize = 100_000;

/// The announcement count when a ticket was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

/// What a kept value shows, and so which announcements outdate it. Every value also depends on
/// everything: a change of everything outdates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depends {
    /// A page of a partner's lines on a tenant.
    Pair { partner: Uuid, tenant: Uuid },
    /// A partner's standing.
    Partner(Uuid),
    /// Which tenant is the default: any tenant's change may move it.
    Tenants,
}

/// Taken before any read, and presented to keep or share what the read returns. It holds, in
/// the one safe order, the stamp and then the watermark a standby must have replayed: taken the
/// other way round, a change announced between the two would be missing from a standby's answer
/// that the stamp already claims to cover.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stamp: Stamp,
    /// Whether memory was trusted when it was taken: a read under an untrusted ticket is
    /// neither kept nor shared.
    trusted: bool,
    watermark: Watermark,
}

impl Ticket {
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    pub fn trusted(&self) -> bool {
        self.trusted
    }

    pub fn watermark(&self) -> Watermark {
        self.watermark
    }
}

/// The number of the last announcement naming each scope. Read and written whole, under one
/// lock: a reader never sees a reset half done.
#[derive(Default)]
struct Names {
    everything: u64,
    any_tenant: u64,
    /// The last announcement whose scopes were forgotten: it outdates whatever no remembered
    /// name speaks for (every remembered one is at least as late).
    forgotten: u64,
    pairs: HashMap<(Uuid, Uuid), u64>,
    partners: HashMap<Uuid, u64>,
    tenants: HashMap<Uuid, u64>,
    /// Each scope as it was named, oldest first: what to forget first.
    named: VecDeque<(u64, Named)>,
}

#[derive(Debug, Clone, Copy)]
enum Named {
    Pair((Uuid, Uuid)),
    Partner(Uuid),
    Tenant(Uuid),
}

impl Names {
    /// The last announcement that outdates values depending on `depends`.
    fn last_outdating(&self, depends: Depends) -> u64 {
        let named = match depends {
            Depends::Pair { partner, tenant } => [
                self.pairs.get(&(partner, tenant)),
                self.partners.get(&partner),
                self.tenants.get(&tenant),
            ]
            .into_iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0),
            Depends::Partner(partner) => self.partners.get(&partner).copied().unwrap_or(0),
            Depends::Tenants => self.any_tenant,
        };
        named.max(self.everything).max(self.forgotten)
    }

    /// Forgets the oldest names, whole announcements at a time, down to nine tenths of the most
    /// remembered.
    fn forget_the_oldest(&mut self) {
        while let Some(&(number, scope)) = self.named.front() {
            let within = self.named.len() <= MAX_REMEMBERED_SCOPES / 10 * 9;
            if within && number != self.forgotten {
                break;
            }
            self.named.pop_front();
            let names = match scope {
                Named::Pair(pair) => self.pairs.get(&pair),
                Named::Partner(partner) => self.partners.get(&partner),
                Named::Tenant(tenant) => self.tenants.get(&tenant),
            };
            // Named again since, it stays (with its later number).
            if names == Some(&number) {
                match scope {
                    Named::Pair(pair) => self.pairs.remove(&pair),
                    Named::Partner(partner) => self.partners.remove(&partner),
                    Named::Tenant(tenant) => self.tenants.remove(&tenant),
                };
            }
            self.forgotten = number;
        }
    }
}

pub struct Freshness {
    /// Announcements applied so far. Written by the feed alone, after the names it publishes.
    sequence: AtomicU64,
    names: RwLock<Names>,
    listening: AtomicBool,
    /// Nanoseconds after `epoch` until which memory is trusted.
    trusted_until: AtomicU64,
    epoch: Instant,
    max_staleness: Duration,
    /// The primary's WAL position that replica reads must have replayed, in bytes.
    watermark: AtomicU64,
    /// Set from an announcement until the position after it is known.
    watermark_pending: AtomicBool,
    /// Bumped whenever which tenant is the default may have changed.
    tenants_outdated: watch::Sender<u64>,
    /// Bumped whenever the feed listens anew: everything kept before is out of date.
    relistened: watch::Sender<u64>,
    /// Bumped with every heartbeat heard.
    heard: watch::Sender<u64>,
    #[cfg(test)]
    pause: std::sync::Mutex<Option<Pause>>,
}

/// Called at each `Step`: a test holds a thread there to force an interleaving.
#[cfg(test)]
type Pause = std::sync::Arc<dyn Fn(Step) + Send + Sync>;

/// Where a test may hold a reader or the feed, to force an interleaving.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A reader is about to take the names' lock.
    Reading,
    /// The feed holds the names' lock, halfway through forgetting every scope.
    Forgetting,
}

impl Freshness {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            sequence: AtomicU64::new(0),
            names: RwLock::default(),
            listening: AtomicBool::new(false),
            trusted_until: AtomicU64::new(0),
            epoch: Instant::now(),
            max_staleness,
            watermark: AtomicU64::new(0),
            watermark_pending: AtomicBool::new(true),
            tenants_outdated: watch::Sender::new(0),
            relistened: watch::Sender::new(0),
            heard: watch::Sender::new(0),
            #[cfg(test)]
            pause: std::sync::Mutex::default(),
        }
    }

    /// Whether memory may answer now: the feed listens and was proven alive lately.
    pub fn is_trusted(&self) -> bool {
        self.listening.load(SeqCst) && self.nanos(Instant::now()) < self.trusted_until.load(SeqCst)
    }

    /// Taken before a read: what it reads may be kept or shared while nothing it depends on
    /// changes after this.
    pub fn ticket(&self) -> Ticket {
        // The stamp first: a change announced from here on outdates what the read returns, so
        // the watermark taken next may be as late as it likes.
        let stamp = Stamp(self.sequence.load(SeqCst));
        let trusted = self.is_trusted();
        let watermark = if !trusted {
            // A standby could miss commits the feed did not hear.
            Watermark::FeedNotTrusted
        } else if self.watermark_pending.load(SeqCst) {
            Watermark::PositionPending
        } else {
            Watermark::Replayed(self.watermark.load(SeqCst))
        };
        Ticket {
            stamp,
            trusted,
            watermark,
        }
    }

    /// Whether a value depending on `depends`, read under a ticket stamped `stamp`, is current.
    pub fn is_current(&self, depends: Depends, stamp: Stamp) -> bool {
        #[cfg(test)]
        self.pause(Step::Reading);
        let names = self.names.read().expect("no writer panics");
        names.last_outdating(depends) <= stamp.0
    }

    /// Changes whenever which tenant is the default may have changed.
    pub fn tenants_outdated(&self) -> watch::Receiver<u64> {
        self.tenants_outdated.subscribe()
    }

    /// Changes whenever the feed listens anew, everything kept before being out of date.
    pub fn relistened(&self) -> watch::Receiver<u64> {
        self.relistened.subscribe()
    }

    /// Waits until memory is trusted, up to `within`; says whether it is.
    pub async fn trusted_within(&self, within: Duration) -> bool {
        let mut heard = self.heard.subscribe();
        let trusted = async {
            while !self.is_trusted() {
                if heard.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(within, trusted).await.is_ok()
    }

    /// Follows the change feed; called by the feed's task alone.
    pub fn apply(&self, change: Change) {
        let next = self.sequence.load(SeqCst) + 1;
        match change {
            Change::Listening { position } => {
                // The position where listening began, even if lower than the last one: after
                // a failover the new primary's timeline may be behind the old one's (commits
                // lost with it), and a standby need only replay this timeline to here.
                if let Some(position) = position {
                    self.watermark.store(position, SeqCst);
                    self.watermark_pending.store(false, SeqCst);
                }
                // Whatever was committed while nobody listened is unknown: everything changed.
                self.name(Scope::Everything, next);
                self.sequence.store(next, SeqCst);
                self.listening.store(true, SeqCst);
                self.relistened.send_modify(|count| *count += 1);
            }
            Change::Changed(scope) => {
                self.watermark_pending.store(true, SeqCst);
                self.name(scope, next);
                self.sequence.store(next, SeqCst);
            }
            Change::Position(position) => self.follow_position(position),
            Change::Heard { sent } => {
                let until = self.nanos(sent + self.max_staleness);
                self.trusted_until.fetch_max(until, SeqCst);
                self.heard.send_modify(|count| *count += 1);
            }
            Change::Deaf => {
                self.listening.store(false, SeqCst);
                self.trusted_until.store(0, SeqCst);
                self.name(Scope::Everything, next);
                self.sequence.store(next, SeqCst);
            }
        }
    }

    fn follow_position(&self, position: u64) {
        self.watermark.fetch_max(position, SeqCst);
        self.watermark_pending.store(false, SeqCst);
    }

    /// Records `scope` as changed by announcement `number`, before `number` is published.
    fn name(&self, scope: Scope, number: u64) {
        let mut names = self.names.write().expect("no writer panics");
        let names = &mut *names;
        let tenants_outdated = match scope {
            Scope::Pairs(pairs) => {
                for pair in pairs {
                    names.pairs.insert(pair, number);
                    names.named.push_back((number, Named::Pair(pair)));
                }
                false
            }
            Scope::Partners(partners) => {
                for partner in partners {
                    names.partners.insert(partner, number);
                    names.named.push_back((number, Named::Partner(partner)));
                }
                false
            }
            Scope::Tenants(tenants) => {
                for tenant in tenants {
                    names.tenants.insert(tenant, number);
                    names.named.push_back((number, Named::Tenant(tenant)));
                }
                names.any_tenant = number;
                true
            }
            Scope::Everything => {
                names.everything = number;
                true
            }
        };
        let forget = names.named.len() > MAX_REMEMBERED_SCOPES;
        if forget {
            names.forget_the_oldest();
            #[cfg(test)]
            self.pause(Step::Forgetting);
        }
        if tenants_outdated || forget {
            self.tenants_outdated.send_modify(|count| *count += 1);
        }
    }

    fn nanos(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    #[cfg(test)]
    fn pause(&self, step: Step) {
        let pause = self.pause.lock().unwrap().clone();
        if let Some(pause) = pause {
            pause(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};

    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);
    const T: Uuid = Uuid::from_u128(10);
    const U: Uuid = Uuid::from_u128(11);

    fn page(partner: Uuid, tenant: Uuid) -> Depends {
        Depends::Pair { partner, tenant }
    }

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
        assert!(!freshness.ticket().trusted(), "not before it listens");
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
        assert!(freshness.ticket().trusted());
        freshness.apply(Change::Deaf);
        assert!(!freshness.ticket().trusted());
    }

    #[test]
    fn a_change_outdates_only_what_it_names() {
        let freshness = live();
        let current = |depends, ticket: Ticket| freshness.is_current(depends, ticket.stamp());
        let before = freshness.ticket();
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        assert!(!current(page(P, T), before));
        assert!(current(page(P, U), before), "another tenant of P");
        assert!(current(page(Q, T), before), "another partner on T");
        assert!(
            current(Depends::Partner(P), before),
            "lines are not standing"
        );
        assert!(current(page(P, T), freshness.ticket()), "read after it");

        let before = freshness.ticket();
        freshness.apply(Change::Changed(Scope::Partners(vec![Q])));
        assert!(!current(page(Q, U), before));
        assert!(!current(Depends::Partner(Q), before));
        assert!(current(page(P, U), before));
        assert!(current(Depends::Tenants, before));

        let before = freshness.ticket();
        freshness.apply(Change::Changed(Scope::Tenants(vec![U])));
        assert!(!current(page(P, U), before));
        assert!(current(page(P, T), before));
        assert!(!current(Depends::Tenants, before));

        let before = freshness.ticket();
        freshness.apply(Change::Changed(Scope::Everything));
        assert!(!current(page(P, T), before));
        assert!(!current(Depends::Partner(P), before));
        assert!(!current(Depends::Tenants, before));
    }

    #[test]
    fn losing_the_feed_outdates_everything() {
        let freshness = live();
        let before = freshness.ticket().stamp();
        freshness.apply(Change::Deaf);
        freshness.apply(Change::Listening { position: None });
        assert!(!freshness.is_current(page(P, T), before));
        assert!(!freshness.is_current(Depends::Partner(P), before));
        assert!(!freshness.is_current(Depends::Tenants, before));
    }

    #[test]
    fn the_watermark_is_unknown_from_an_announcement_until_the_position_after_it() {
        let freshness = Freshness::new(Duration::from_secs(2));
        let watermark = || freshness.ticket().watermark();
        assert_eq!(watermark(), Watermark::FeedNotTrusted, "before listening");
        freshness.apply(Change::Listening {
            position: Some(100),
        });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        assert_eq!(watermark(), Watermark::Replayed(100));
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        assert_eq!(watermark(), Watermark::PositionPending);
        freshness.apply(Change::Position(250));
        assert_eq!(watermark(), Watermark::Replayed(250));
        freshness.apply(Change::Position(200));
        assert_eq!(watermark(), Watermark::Replayed(250), "it never goes back");
        freshness.apply(Change::Deaf);
        assert_eq!(watermark(), Watermark::FeedNotTrusted);
        // Listening anew on a primary whose timeline is behind (a failover lost commits).
        freshness.apply(Change::Listening {
            position: Some(180),
        });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        assert_eq!(
            watermark(),
            Watermark::Replayed(180),
            "a new timeline's position"
        );
    }

    fn overflowing() -> Change {
        let many = (0..=MAX_REMEMBERED_SCOPES as u128).map(|n| (Uuid::from_u128(n + 100), T));
        Change::Changed(Scope::Pairs(many.collect()))
    }

    #[test]
    fn too_many_remembered_scopes_forget_the_oldest_never_everything() {
        let freshness = live();
        let before = freshness.ticket().stamp();
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        let mut between = None;
        for chunk in 0..11_u128 {
            let pairs = (0..10_000).map(|n| (Uuid::from_u128(1_000 + chunk * 10_000 + n), T));
            freshness.apply(Change::Changed(Scope::Pairs(pairs.collect())));
            if chunk == 2 {
                between = Some(freshness.ticket().stamp());
            }
        }
        assert!(
            !freshness.is_current(page(P, T), before),
            "forgotten: outdated"
        );
        assert!(!freshness.is_current(page(Q, U), before));
        assert!(
            freshness.is_current(page(Q, U), between.unwrap()),
            "read after what was forgotten, never named since: still current"
        );
    }

    /// The feed forgets every scope while a reader checks a page its last change named: the
    /// reader waits for the whole reset and sees it done (it used to read `everything` before
    /// taking the lock, find the scope forgotten after, and call a stale page current).
    #[test]
    fn a_reader_never_sees_forgetting_half_done() {
        let freshness = Arc::new(live());
        let before = freshness.ticket().stamp();
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        let (reached, steps) = mpsc::channel();
        let (resume, resumed) = mpsc::channel::<()>();
        let resumed = std::sync::Mutex::new(resumed);
        *freshness.pause.lock().unwrap() = Some(Arc::new(move |step| {
            reached.send(step).unwrap();
            if step == Step::Forgetting {
                resumed.lock().unwrap().recv().unwrap();
            }
        }));
        let feed = std::thread::spawn({
            let freshness = freshness.clone();
            move || freshness.apply(overflowing())
        });
        assert_eq!(steps.recv().unwrap(), Step::Forgetting);
        let reader = std::thread::spawn({
            let freshness = freshness.clone();
            move || freshness.is_current(page(P, T), before)
        });
        assert_eq!(steps.recv().unwrap(), Step::Reading);
        resume.send(()).unwrap();
        feed.join().unwrap();
        assert!(
            !reader.join().unwrap(),
            "a page read before its change is not current"
        );
    }

    /// The default tenant is read again after anything that may move it: a tenant's change, a
    /// change of everything, forgetting every scope, and listening anew.
    #[test]
    fn whatever_may_move_the_default_tenant_says_so() {
        let freshness = live();
        let mut outdated = freshness.tenants_outdated();
        let mut says_so = |change| {
            outdated.mark_unchanged();
            freshness.apply(change);
            outdated.has_changed().unwrap()
        };
        assert!(says_so(Change::Changed(Scope::Tenants(vec![T]))));
        assert!(says_so(Change::Changed(Scope::Everything)));
        assert!(says_so(overflowing()));
        assert!(says_so(Change::Listening { position: None }));
        assert!(!says_so(Change::Changed(Scope::Partners(vec![P]))));
    }
}
