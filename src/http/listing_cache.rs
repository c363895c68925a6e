//! Rendered caller-line pages kept in memory while the database's change feed is connected.
//!
//! Partners poll the same pages over and over, and the lines change only when an operator
//! writes SQL. Every committed write to the tables the list reads is announced on a channel
//! (migration 0700, `store::changes`); each announcement starts a new generation and pages
//! rendered in an older one are never served again. While the feed is down nothing is kept,
//! so a lost announcement cannot leave a stale page behind.
//!
//! A page is keyed by everything its statement reads: the token's partner *and* issue time
//! (revocation compares the two), the tenant, the filter and the page; and by the content
//! coding it goes out in, so a compressed page is compressed once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::response::encoding::{Coding, EncodedPage};
use crate::domain::partners::PartnerToken;
use crate::domain::query::{LineFilter, PageRequest};
use crate::store::changes::Change;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    partner_id: Uuid,
    issued_at: DateTime<Utc>,
    tenant_id: Uuid,
    filter: LineFilter,
    page: PageRequest,
    coding: Coding,
}

impl PageKey {
    pub fn new(
        token: PartnerToken,
        tenant_id: Uuid,
        filter: LineFilter,
        page: PageRequest,
        coding: Coding,
    ) -> Self {
        Self {
            partner_id: token.partner_id,
            issued_at: token.issued_at,
            tenant_id,
            filter,
            page,
            coding,
        }
    }
}

#[derive(Clone)]
struct Page {
    generation: u64,
    encoded: EncodedPage,
}

/// Weighs a page by its body, so the bound is on memory rather than on a count of pages.
#[derive(Clone)]
struct BodySize;

impl quick_cache::Weighter<PageKey, Page> for BodySize {
    fn weight(&self, _key: &PageKey, page: &Page) -> u64 {
        page.encoded.size() as u64 + 64
    }
}

pub enum Lookup<'c> {
    Hit(EncodedPage),
    /// Not kept (yet): read the page, then `keep` it.
    Miss(Pending<'c>),
    /// The change feed is down: read the page, keep nothing.
    Bypass,
}

/// A page being read, and the generation the read began in.
pub struct Pending<'c> {
    cache: &'c ListingCache,
    key: PageKey,
    generation: u64,
}

impl Pending<'_> {
    /// Keeps the page unless a change was announced since the read began; a change announced
    /// while it is being stored moves the generation on, and `lookup` then passes it over.
    pub fn keep(self, encoded: EncodedPage) {
        let cache = self.cache;
        if self.generation == cache.generation.load(Ordering::SeqCst) {
            let page = Page {
                generation: self.generation,
                encoded,
            };
            cache.pages.insert(self.key, page);
        }
    }
}

pub struct ListingCache {
    pages: quick_cache::sync::Cache<PageKey, Page, BodySize>,
    generation: AtomicU64,
    /// Whether the change feed is listening; without it no page is served or kept.
    live: AtomicBool,
}

impl ListingCache {
    /// A cache holding at most `max_bytes` of rendered pages.
    pub fn new(max_bytes: u64) -> Self {
        const TYPICAL_PAGE_BYTES: u64 = 10_000;
        Self {
            pages: quick_cache::sync::Cache::with_weighter(
                (max_bytes / TYPICAL_PAGE_BYTES).max(1) as usize,
                max_bytes,
                BodySize,
            ),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
        }
    }

    /// The page kept for `key` in the current generation or, failing that, what a read must
    /// present to keep the page it is about to render.
    pub fn lookup(&self, key: PageKey) -> Lookup<'_> {
        // The generation is read first: a read begun before a change must not be kept.
        let generation = self.generation.load(Ordering::SeqCst);
        let outcome = if !self.live.load(Ordering::SeqCst) {
            Lookup::Bypass
        } else {
            match self.pages.get(&key) {
                Some(page) if page.generation == generation => Lookup::Hit(page.encoded),
                _ => Lookup::Miss(Pending {
                    cache: self,
                    key,
                    generation,
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

    /// Follows the change feed.
    pub fn apply(&self, change: Change) {
        match change {
            // Whatever happened while nobody listened is unknown: start afresh.
            Change::Listening => {
                self.next_generation();
                self.live.store(true, Ordering::SeqCst);
            }
            Change::Committed => self.next_generation(),
            Change::Deaf => {
                self.live.store(false, Ordering::SeqCst);
                self.next_generation();
            }
        }
        metrics::gauge!("agent_api_listing_cache_live")
            .set(f64::from(u8::from(self.live.load(Ordering::SeqCst))));
    }

    /// Whether pages are being kept (the change feed is listening).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{ETAG, HeaderValue};
    use actix_web::web::Bytes;

    use super::*;
    use crate::http::response::etag::weak_tag;

    fn page_of(json: &'static [u8]) -> EncodedPage {
        EncodedPage::new(Bytes::from_static(json), Coding::Identity)
    }

    fn key(page: i64) -> PageKey {
        let token = PartnerToken {
            partner_id: Uuid::nil(),
            issued_at: DateTime::UNIX_EPOCH,
        };
        let page = PageRequest { page, per_page: 15 };
        PageKey::new(
            token,
            Uuid::nil(),
            LineFilter::default(),
            page,
            Coding::Identity,
        )
    }

    fn live_cache() -> ListingCache {
        live_cache_of(1 << 20)
    }

    fn live_cache_of(max_bytes: u64) -> ListingCache {
        let cache = ListingCache::new(max_bytes);
        cache.apply(Change::Listening);
        cache
    }

    fn pending(cache: &ListingCache, page: i64) -> Pending<'_> {
        match cache.lookup(key(page)) {
            Lookup::Miss(pending) => pending,
            Lookup::Hit(_) => panic!("page {page} is kept"),
            Lookup::Bypass => panic!("the cache is bypassed"),
        }
    }

    /// The tag of the page kept, which names its JSON.
    fn kept(cache: &ListingCache, page: i64) -> Option<HeaderValue> {
        match cache.lookup(key(page)) {
            Lookup::Hit(encoded) => encoded.response().headers().get(ETAG).cloned(),
            _ => None,
        }
    }

    #[test]
    fn nothing_is_kept_or_served_while_the_feed_is_deaf() {
        let cache = ListingCache::new(1 << 20);
        assert!(matches!(cache.lookup(key(1)), Lookup::Bypass));
        let cache = live_cache();
        pending(&cache, 1).keep(page_of(b"page 1"));
        assert_eq!(kept(&cache, 1), Some(weak_tag(b"page 1")));
        cache.apply(Change::Deaf);
        assert!(matches!(cache.lookup(key(1)), Lookup::Bypass));
    }

    #[test]
    fn a_page_read_before_a_change_is_never_served_after_it() {
        let cache = live_cache();
        pending(&cache, 1).keep(page_of(b"page 1"));
        assert_eq!(kept(&cache, 1), Some(weak_tag(b"page 1")));
        assert_eq!(kept(&cache, 2), None);

        // A read that began before the change but finishes after it.
        let racing = pending(&cache, 2);
        cache.apply(Change::Committed);
        assert_eq!(kept(&cache, 1), None);
        racing.keep(page_of(b"stale"));
        assert_eq!(kept(&cache, 2), None);

        pending(&cache, 2).keep(page_of(b"fresh"));
        assert_eq!(kept(&cache, 2), Some(weak_tag(b"fresh")));
    }

    #[test]
    fn reconnecting_forgets_what_was_kept_before() {
        let cache = live_cache();
        pending(&cache, 1).keep(page_of(b"page 1"));
        cache.apply(Change::Deaf);
        cache.apply(Change::Listening);
        assert_eq!(kept(&cache, 1), None);
    }

    #[test]
    fn pages_beyond_the_bound_are_evicted() {
        let cache = live_cache_of(64 * 1024);
        for page in 1..=100 {
            let json = Bytes::from(vec![b'x'; 4096]);
            pending(&cache, page).keep(EncodedPage::new(json, Coding::Identity));
        }
        let kept_pages = (1..=100)
            .filter(|&page| kept(&cache, page).is_some())
            .count();
        assert!(
            (1..=16).contains(&kept_pages),
            "{kept_pages} pages of 4 KiB kept"
        );
    }
}
