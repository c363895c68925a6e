//! Operational endpoints outside `/agent-api` (SPEC §5).

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, web};

use crate::http::state::AppState;
use crate::rate_limit::{RateLimits, Where};
use crate::store::postgres::schema::Schema;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Whether a balancer may send partners here, from what the instance already knows (no round
/// trip per request: a stranger may ask as often as it likes): the primary answered within the
/// last few seconds and the schema is this build's (or a newer release's). 503 with
/// `Retry-After` otherwise, saying why. The body also says whether list pages are being cached
/// (`live`; `bypassed` while the change feed is not proven to hear, every read then going to
/// the database; or `disabled`), and where the rate limits' buckets are (`local` to this
/// process, `shared` in Redis, `fallback` to this process's share while Redis does not answer,
/// or `off`). The operations listener adds each standby's address and state, and the schema's
/// versions.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    readiness(&state, false)
}

pub async fn readyz_in_detail(state: web::Data<AppState>) -> HttpResponse {
    readiness(&state, true)
}

fn readiness(state: &AppState, in_detail: bool) -> HttpResponse {
    let database = state.health.database_answers();
    let schema = state.health.schema();
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
    let ready = state.health.is_ready();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": if database { "answers" } else { "does not answer" },
        "schema": match &schema {
            Schema::Unknown => "unknown",
            Schema::Current => "current",
            Schema::Ahead { .. } => "ahead",
            Schema::Behind { .. } => "behind",
            Schema::Unreadable { .. } => "unreadable",
            Schema::Foreign { .. } => "foreign",
        },
        "listing_cache": listing_cache,
        "rate_limit": rate_limit,
    });
    match &schema {
        Schema::Behind { missing } => {
            body["missing_migrations"] = serde_json::json!(missing);
            body["action"] = "run agent-api migrate".into();
        }
        Schema::Ahead { unknown } if in_detail => {
            body["unknown_migrations"] = serde_json::json!(unknown);
        }
        // The role's name and the grant are for operators, not strangers on the partners' port.
        Schema::Unreadable { reason, action } if in_detail => {
            body["schema_error"] = reason.as_str().into();
            body["action"] = action.as_str().into();
        }
        _ => {}
    }
    if in_detail {
        // Standbys are listed, not required: reads go to the primary while none is fit.
        let replicas: Vec<_> = state
            .database
            .replicas()
            .map(|replicas| replicas.states())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, replica)| serde_json::json!({"replica": name, "state": replica.name()}))
            .collect();
        body["replicas"] = replicas.into();
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(body)
    }
}

/// Prometheus text exposition, from memory: a scrape costs the database nothing (what needs
/// the database is refreshed in the background).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (open, idle) = state.database.connection_counts();
    metrics::gauge!("agent_api_db_pool_connections").set(open as f64);
    metrics::gauge!("agent_api_db_pool_idle_connections").set(idle as f64);
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
