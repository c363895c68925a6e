//! The HTTP layer: shared state, routes, and one module per endpoint family.

pub mod authn;
pub mod callerlines;
pub mod conditional;
pub mod error;
pub mod legacy;
pub mod listing_cache;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod rate_limit;
pub mod representation;
pub mod tenants;
pub mod wire;

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::auth::KeyRing;
use crate::config::LegacySettings;
use crate::domain::query::PageLimits;
use error::ApiError;
use listing_cache::ListingCache;
use rate_limit::RateLimits;

/// The time source of the legacy sunset, injected so it can be tested at any instant. Token
/// times are checked against the system clock, as `jsonwebtoken` checks `exp`.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

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

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/agent-api")
                .wrap(actix_web::middleware::from_fn(conditional::etag))
                .service(get("/tenant", tenants::list))
                .service(get("/tenant/{id}/callerline", callerlines::list_on_tenant))
                .service(get("/callerline", legacy::list_default_tenant)),
        )
        .service(get("/healthz", ops::healthz))
        .service(get("/readyz", ops::readyz))
        .service(get("/metrics", ops::metrics))
        .service(web::redirect("/docs", "/docs/"));
}

/// A GET-only resource; any other method answers the 405 envelope.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(
            web::get()
                .to(handler)
                .wrap(actix_web::middleware::from_fn(middleware::catch_panic)),
        )
        .default_service(web::to(method_not_allowed))
}

/// The app's default service: the 404 envelope, under `/agent-api/` and elsewhere.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
