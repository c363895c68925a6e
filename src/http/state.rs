//! What every handler shares: the pool, the keys, the settings it needs and the in-memory state.

use std::sync::Arc;

use chrono_tz::Tz;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use super::listing_cache::ListingCache;
use super::rate_limit::RateLimits;
use crate::clock::Clock;
use crate::config::LegacySettings;
use crate::domain::query::PageLimits;
use crate::tokens::KeyRing;

pub struct AppState {
    pub pool: PgPool,
    pub keys: KeyRing,
    pub page_limits: PageLimits,
    pub display_timezone: Tz,
    pub legacy: LegacySettings,
    pub rate_limits: Option<RateLimits>,
    pub clock: Clock,
    pub metrics: PrometheusHandle,
    /// Rendered caller-line pages; `None` when `listing_cache.enabled` is off.
    pub listing_cache: Option<Arc<ListingCache>>,
}
