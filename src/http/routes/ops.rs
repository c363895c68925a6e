//! Operational endpoints outside `/agent-api` (SPEC §5).

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::rate_limit::{RateLimits, Where};
use crate::store;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database answers; 503 (with `Retry-After`) while it does not. The body also says
/// whether list pages are being cached (`live`; `bypassed` while the change feed is not proven
/// to hear, every read then going to the database; or `disabled`), and where the rate limits'
/// buckets are (`local` to this process, `shared` in Redis, `fallback` to this process's share
/// while Redis does not answer, or `off`).
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    store::ping(&state.pool)
        .await
        .map_err(ApiError::Unavailable)?;
    let listing_cache = match (&state.pages, state.freshness.is_trusted()) {
        (None, _) => "disabled",
        (Some(_), true) => "live",
        (Some(_), false) => "bypassed",
    };
    let rate_limit = match state.rate_limits.as_ref().map(RateLimits::whereabouts) {
        None => "off",
        Some(Where::Local) => "local",
        Some(Where::Shared) => "shared",
        Some(Where::Fallback) => "fallback",
    };
    // Standbys are listed, not required: reads go to the primary while none is fit.
    let replicas: Vec<_> = state
        .reads
        .replicas()
        .map(|replicas| replicas.states())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, replica)| serde_json::json!({"replica": name, "state": replica.name()}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "listing_cache": listing_cache,
        "rate_limit": rate_limit,
        "replicas": replicas,
    })))
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = &state.pool;
    // Bounded: a scrape answers whatever the database does.
    let rows = store::caller_lines::most_count_rows_of_a_pair(pool);
    if let Ok(Ok(rows)) = tokio::time::timeout(Duration::from_secs(1), rows).await {
        metrics::gauge!("agent_api_line_count_rows_max").set(rows as f64);
    }
    metrics::gauge!("agent_api_db_pool_connections").set(f64::from(pool.size()));
    metrics::gauge!("agent_api_db_pool_idle_connections").set(pool.num_idle() as f64);
    let trusted = state.freshness.is_trusted();
    metrics::gauge!("agent_api_listing_cache_live").set(f64::from(u8::from(trusted)));
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("a valid mime type"),
        ))
        .body(state.metrics.render())
}
