//! Rendered list pages kept in memory. Partners poll the same pages over and over, and lines
//! change only when an operator writes SQL: a page is answered from memory while nothing it
//! shows has been announced as changed since it was read (`Freshness`), and only while memory is
//! trusted at all.
//!
//! Memory is bounded by what entries really cost (the body, the key, the value and the cache's
//! bookkeeping), and one partner may take at most a share of it, so no caller can crowd out the
//! rest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use quick_cache::{Lifecycle, Weighter};
use uuid::Uuid;

use super::freshness::{Freshness, Stamp};

/// The bytes an entry costs beyond its body: the key and value inline, the cache's slot and
/// hash entry, and the allocator's rounding of the body (measured: see the README).
pub const ENTRY_OVERHEAD_BYTES: u64 = 1024;

/// A page of `partner`'s lines on `tenant`; `variant` is the rest of what makes it (filter,
/// page, content coding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey<K> {
    pub partner_id: Uuid,
    pub tenant_id: Uuid,
    pub variant: K,
}

#[derive(Clone)]
struct Kept<V> {
    value: V,
    read_at: Stamp,
    weight: u64,
}

#[derive(Clone)]
struct ByWeight;

impl<K, V> Weighter<PageKey<K>, Kept<V>> for ByWeight {
    fn weight(&self, _key: &PageKey<K>, kept: &Kept<V>) -> u64 {
        kept.weight
    }
}

/// Bytes kept per partner.
type Shares = Arc<Mutex<HashMap<Uuid, u64>>>;

/// Gives a partner's share back as its pages are evicted.
#[derive(Clone)]
struct ReturnShare(Shares);

impl<K, V> Lifecycle<PageKey<K>, Kept<V>> for ReturnShare {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), key: PageKey<K>, kept: Kept<V>) {
        give_back(&self.0, key.partner_id, kept.weight);
    }
}

fn give_back(shares: &Shares, partner: Uuid, weight: u64) {
    let mut shares = shares.lock().expect("no holder panics");
    if let Some(held) = shares.get_mut(&partner) {
        *held = held.saturating_sub(weight);
        if *held == 0 {
            shares.remove(&partner);
        }
    }
}

type Store<K, V> = quick_cache::sync::Cache<
    PageKey<K>,
    Kept<V>,
    ByWeight,
    quick_cache::DefaultHashBuilder,
    ReturnShare,
>;

pub struct Pages<K, V> {
    pages: Store<K, V>,
    shares: Shares,
    /// The most one partner's pages may weigh together.
    max_share: u64,
    freshness: Arc<Freshness>,
}

pub enum Lookup<'c, K, V> {
    Hit(V),
    /// Not kept, or no longer current: read the page, then `keep` it.
    Miss(Pending<'c, K, V>),
    /// Memory is not trusted: read the page, keep nothing.
    Bypass,
}

/// A page being read, and the stamp taken before the read began.
pub struct Pending<'c, K, V> {
    pages: &'c Pages<K, V>,
    key: PageKey<K>,
    read_at: Stamp,
}

impl<K, V> Pending<'_, K, V>
where
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// Keeps the page unless something it shows was announced as changed while it was read,
    /// or its partner already holds its share. `body_bytes` is the size of its body's allocation.
    pub fn keep(self, value: V, body_bytes: usize) {
        let Self {
            pages,
            key,
            read_at,
        } = self;
        if !pages
            .freshness
            .page_is_current(key.partner_id, key.tenant_id, read_at)
        {
            return;
        }
        // An out-of-date page under the same key is replaced, not evicted: give its share back.
        if let Some((_, replaced)) = pages.pages.remove(&key) {
            give_back(&pages.shares, key.partner_id, replaced.weight);
        }
        let weight = body_bytes as u64 + ENTRY_OVERHEAD_BYTES;
        {
            let mut shares = pages.shares.lock().expect("no holder panics");
            let held = shares.get(&key.partner_id).copied().unwrap_or(0);
            if held + weight > pages.max_share {
                return;
            }
            shares.insert(key.partner_id, held + weight);
        }
        // A page too big for the cache is turned away through `ReturnShare` as well.
        pages.pages.insert(
            key,
            Kept {
                value,
                read_at,
                weight,
            },
        );
    }
}

impl<K, V> Pages<K, V>
where
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// At most `max_bytes` of pages, of which one partner's at most `max_share` (0 to 1).
    pub fn new(max_bytes: u64, max_share: f64, freshness: Arc<Freshness>) -> Self {
        const TYPICAL_ENTRY_BYTES: u64 = 4_096;
        let shares = Shares::default();
        Self {
            pages: Store::with(
                (max_bytes / TYPICAL_ENTRY_BYTES).max(1) as usize,
                max_bytes,
                ByWeight,
                Default::default(),
                ReturnShare(shares.clone()),
            ),
            shares,
            max_share: (max_bytes as f64 * max_share) as u64,
            freshness,
        }
    }

    /// The current page kept for `key` or, failing that, what a read must present to keep
    /// the page it is about to render.
    pub fn lookup(&self, key: PageKey<K>) -> Lookup<'_, K, V> {
        // The stamp is taken first: a read begun before a change must not be kept.
        let read_at = self.freshness.stamp();
        let outcome = if !self.freshness.is_trusted() {
            Lookup::Bypass
        } else {
            match self.pages.get(&key) {
                Some(kept)
                    if self.freshness.page_is_current(
                        key.partner_id,
                        key.tenant_id,
                        kept.read_at,
                    ) =>
                {
                    Lookup::Hit(kept.value)
                }
                _ => Lookup::Miss(Pending {
                    pages: self,
                    key,
                    read_at,
                }),
            }
        };
        let label = match outcome {
            Lookup::Hit(_) => "hit",
            Lookup::Miss(_) => "miss",
            Lookup::Bypass => "bypass",
        };
        metrics::counter!("agent_api_listing_cache_total", "outcome" => label).increment(1);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::changes::{Change, Scope};

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);
    const T: Uuid = Uuid::from_u128(10);

    fn trusted() -> Arc<Freshness> {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        freshness.apply(Change::Listening { position: None });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        freshness
    }

    fn key(partner: Uuid, page: u32) -> PageKey<u32> {
        PageKey {
            partner_id: partner,
            tenant_id: T,
            variant: page,
        }
    }

    fn pending<'c>(
        pages: &'c Pages<u32, &'static str>,
        key: PageKey<u32>,
    ) -> Pending<'c, u32, &'static str> {
        match pages.lookup(key) {
            Lookup::Miss(pending) => pending,
            Lookup::Hit(_) => panic!("kept already"),
            Lookup::Bypass => panic!("bypassed"),
        }
    }

    fn kept(pages: &Pages<u32, &'static str>, key: PageKey<u32>) -> Option<&'static str> {
        match pages.lookup(key) {
            Lookup::Hit(value) => Some(value),
            _ => None,
        }
    }

    #[test]
    fn nothing_is_served_while_memory_is_not_trusted() {
        let freshness = trusted();
        let pages = Pages::new(1 << 20, 1.0, freshness.clone());
        pending(&pages, key(P, 1)).keep("page", 10);
        assert_eq!(kept(&pages, key(P, 1)), Some("page"));
        freshness.apply(Change::Deaf);
        assert!(matches!(pages.lookup(key(P, 1)), Lookup::Bypass));
    }

    #[test]
    fn a_page_read_while_its_scope_changed_is_not_kept() {
        let freshness = trusted();
        let pages = Pages::new(1 << 20, 1.0, freshness.clone());
        let racing = pending(&pages, key(P, 1));
        let unrelated = pending(&pages, key(Q, 1));
        freshness.apply(Change::Changed(Scope::Pairs(vec![(P, T)])));
        racing.keep("stale", 10);
        unrelated.keep("fresh", 10);
        assert_eq!(kept(&pages, key(P, 1)), None);
        assert_eq!(
            kept(&pages, key(Q, 1)),
            Some("fresh"),
            "another partner's read is kept"
        );
    }

    #[test]
    fn a_change_drops_only_the_pages_it_names() {
        let freshness = trusted();
        let pages = Pages::new(1 << 20, 1.0, freshness.clone());
        pending(&pages, key(P, 1)).keep("p", 10);
        pending(&pages, key(Q, 1)).keep("q", 10);
        freshness.apply(Change::Changed(Scope::Partners(vec![P])));
        assert_eq!(kept(&pages, key(P, 1)), None);
        assert_eq!(kept(&pages, key(Q, 1)), Some("q"));
        pending(&pages, key(P, 1)).keep("p again", 10);
        assert_eq!(kept(&pages, key(P, 1)), Some("p again"));
    }

    #[test]
    fn pages_beyond_the_bound_are_evicted_and_one_partner_keeps_its_share() {
        let pages = Pages::new(64 * 1024, 0.25, trusted());
        for page in 1..=100 {
            pending(&pages, key(P, page)).keep("big", 4096);
        }
        let kept_pages = (1..=100)
            .filter(|&page| kept(&pages, key(P, page)).is_some())
            .count();
        // A quarter of 64 KiB holds three pages of 4 KiB and their overhead.
        assert!((1..=3).contains(&kept_pages), "{kept_pages} pages kept");
        pending(&pages, key(Q, 1)).keep("other", 4096);
        assert_eq!(
            kept(&pages, key(Q, 1)),
            Some("other"),
            "another partner still has room"
        );
        assert!(pages.pages.weight() <= 64 * 1024);
    }
}
