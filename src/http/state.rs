//! What every handler shares: the pool, the keys, the settings it needs and what is kept in
//! memory between requests.

use std::sync::Arc;

use chrono_tz::Tz;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;

use super::response::asset::Reference;
use super::response::encoding::{Coding, EncodedPage};
use crate::cache::{DefaultTenant, Freshness, Memory, PageKey, Pages, Standings};
use crate::clock::Clock;
use crate::config::LegacySettings;
use crate::domain::query::{LineFilter, PageLimits, PageRequest};
use crate::health::Health;
use crate::rate_limit::RateLimits;
use crate::store::Database;
use crate::tokens::KeyRing;

/// What, besides its partner and tenant, makes a kept caller-line page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinePage {
    pub filter: LineFilter,
    pub page: PageRequest,
    pub coding: Coding,
}

pub type ListingCache = Memory<PageKey<LinePage>, EncodedPage, Pages<LinePage, EncodedPage>>;

pub struct AppState {
    /// The primary, and the standbys cache-miss lists are read on.
    pub database: Database,
    pub keys: KeyRing,
    pub page_limits: PageLimits,
    pub display_timezone: Tz,
    pub legacy: LegacySettings,
    pub rate_limits: Option<RateLimits>,
    /// Balancers whose `X-Forwarded-For` names the client (`rate_limit.trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
    pub clock: Clock,
    pub metrics: PrometheusHandle,
    /// What the change feed has said: whether memory may answer, and what is out of date.
    pub freshness: Arc<Freshness>,
    /// Rendered caller-line pages; `None` when `listing_cache.enabled` is off.
    pub pages: Option<ListingCache>,
    pub standings: Arc<Standings>,
    pub default_tenant: Arc<DefaultTenant>,
    /// Whether the primary answers and the schema is this build's, kept current in the
    /// background.
    pub health: Arc<Health>,
    /// `/openapi.json` and `/docs`, each file made and compressed once.
    pub reference: Reference,
}
