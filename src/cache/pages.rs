//! Where rendered list pages are kept. Partners poll the same pages over and over, and lines
//! change only when an operator writes SQL, so pages are kept under the protocol of
//! `memory`.
//!
//! Memory is bounded by what entries really cost (the body, the key, the value and the cache's
//! bookkeeping), and one partner may take at most a share of it, so no caller can crowd out the
//! rest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use quick_cache::{Lifecycle, Weighter};
use uuid::Uuid;

use super::freshness::{Depends, Stamp};
use super::memory::Slots;

/// The bytes an entry costs beyond its body: the key and value inline, the cache's slot and
/// hash entry, and the allocator's rounding of the body (measured: see docs/development.md).
pub const ENTRY_OVERHEAD_BYTES: u64 = 1024;

/// A page of `partner`'s lines on `tenant`; `variant` is the rest of what makes it (filter,
/// page, content coding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey<K> {
    pub partner_id: Uuid,
    pub tenant_id: Uuid,
    pub variant: K,
}

impl<K> PageKey<K> {
    /// A page shows its pair's lines, its partner's users and its tenant.
    pub fn depends(&self) -> Depends {
        Depends::Pair {
            partner: self.partner_id,
            tenant: self.tenant_id,
        }
    }
}

/// What a kept value costs on the heap beyond the entry itself.
pub trait Weighed {
    fn heap_bytes(&self) -> usize;
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
}

impl<K, V> Pages<K, V>
where
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// At most `max_bytes` of pages, of which one partner's at most `max_share` (0 to 1).
    pub fn new(max_bytes: u64, max_share: f64) -> Self {
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
        }
    }
}

impl<K, V> Slots<PageKey<K>, V> for Pages<K, V>
where
    K: Clone + Eq + Hash + Send + Sync,
    V: Clone + Weighed + Send + Sync,
{
    fn get(&self, key: &PageKey<K>) -> Option<(V, Stamp)> {
        self.pages.get(key).map(|kept| (kept.value, kept.read_at))
    }

    /// Keeps the page unless its partner already holds its share.
    fn put(&self, key: PageKey<K>, value: V, read_at: Stamp) {
        // Whatever is kept under this key goes first, its share given back: quick_cache replaces
        // an entry in place without reporting it (`on_evict`), so its share would stay held.
        if let Some((_, replaced)) = self.pages.remove(&key) {
            give_back(&self.shares, key.partner_id, replaced.weight);
        }
        let weight = value.heap_bytes() as u64 + ENTRY_OVERHEAD_BYTES;
        {
            let mut shares = self.shares.lock().expect("no holder panics");
            let held = shares.get(&key.partner_id).copied().unwrap_or(0);
            if held + weight > self.max_share {
                return;
            }
            shares.insert(key.partner_id, held + weight);
        }
        // quick_cache splits the bound across shards and admits no entry heavier than a shard's
        // hot part; one it turns away is reported through `on_evict`, so its share comes back.
        self.pages.insert(
            key,
            Kept {
                value,
                read_at,
                weight,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cache::freshness::Freshness;
    use crate::cache::memory::{Keep, Memory, Outcome};
    use crate::store::feed::announcements::Scope;
    use crate::store::feed::changes::Change;

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);
    const T: Uuid = Uuid::from_u128(10);

    #[derive(Clone, Debug, PartialEq)]
    struct Body(&'static str, usize);

    impl Weighed for Body {
        fn heap_bytes(&self) -> usize {
            self.1
        }
    }

    type TestPages = Memory<PageKey<u32>, Body, Pages<u32, Body>>;

    fn pages(max_bytes: u64, max_share: f64) -> (Arc<Freshness>, TestPages) {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        freshness.apply(Change::Listening { position: None });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        let pages = Memory::new(
            Pages::new(max_bytes, max_share),
            freshness.clone(),
            PageKey::depends,
        );
        (freshness, pages)
    }

    fn key(partner: Uuid, page: u32) -> PageKey<u32> {
        PageKey {
            partner_id: partner,
            tenant_id: T,
            variant: page,
        }
    }

    async fn read(pages: &TestPages, key: PageKey<u32>, body: Body) -> Outcome {
        let read = async |_| Ok::<_, ()>((body, Keep::Yes));
        pages.get_or_read(&key, read).await.unwrap().1
    }

    #[tokio::test]
    async fn a_change_drops_only_the_pages_it_names() {
        let (freshness, pages) = pages(1 << 20, 1.0);
        read(&pages, key(P, 1), Body("p", 10)).await;
        read(&pages, key(Q, 1), Body("q", 10)).await;
        freshness.apply(Change::Changed(Scope::Partners(vec![P])));
        assert_eq!(pages.current(&key(P, 1)), None);
        assert_eq!(pages.current(&key(Q, 1)), Some(Body("q", 10)));
        assert_eq!(read(&pages, key(P, 1), Body("p2", 10)).await, Outcome::Miss);
        assert_eq!(read(&pages, key(P, 1), Body("p3", 10)).await, Outcome::Hit);
    }

    #[tokio::test]
    async fn pages_beyond_the_bound_are_evicted_and_one_partner_keeps_its_share() {
        let (_, pages) = pages(64 * 1024, 0.25);
        for page in 1..=100 {
            read(&pages, key(P, page), Body("big", 4096)).await;
        }
        let kept_pages = (1..=100)
            .filter(|&page| pages.current(&key(P, page)).is_some())
            .count();
        // A quarter of 64 KiB holds three pages of 4 KiB and their overhead.
        assert!((1..=3).contains(&kept_pages), "{kept_pages} pages kept");
        read(&pages, key(Q, 1), Body("other", 4096)).await;
        assert!(
            pages.current(&key(Q, 1)).is_some(),
            "another partner still has room"
        );
        assert!(pages.slots().pages.weight() <= 64 * 1024);
    }
}
