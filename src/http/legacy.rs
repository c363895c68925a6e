//! GET /agent-api/callerline: the pre-tenant route, serving the default tenant until its sunset
//! (SPEC §3). It is the tenant route's code behind a switch and three headers.

use std::time::SystemTime;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::AppState;
use super::authn::authenticate;
use super::callerlines::list_lines;
use super::error::ApiError;
use crate::auth::Rejection;
use crate::config::{LegacyMode, LegacySettings};
use crate::store;

impl LegacySettings {
    /// Whether the route is served at `now`; from the sunset instant on, `auto` means gone.
    pub fn is_served(&self, now: DateTime<Utc>) -> bool {
        match self.callerline {
            LegacyMode::Auto => now < self.sunset_at,
            LegacyMode::On => true,
            LegacyMode::Off => false,
        }
    }
}

#[tracing::instrument(name = "list_caller_lines_legacy", skip_all)]
pub async fn list_default_tenant(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let served = state.legacy.is_served((state.clock)());
    // Needed for the successor link on every response; if it fails, the link is left off.
    let default_tenant = store::tenants::default_tenant_id(&state.pool).await;
    let successor = default_tenant.as_ref().ok().copied().flatten();
    let outcome = match (authenticate(&request), default_tenant) {
        (Err(error), _) => Err(error),
        (Ok(_), Err(error)) => Err(error.into()),
        // Authentication comes first even when gone (SPEC §3): strangers learn nothing.
        (Ok(token), Ok(_)) if !served => match store::partner_is_active(&state.pool, token).await {
            Ok(true) => Err(ApiError::LegacyGone),
            Ok(false) => Err(Rejection::PartnerRejected.into()),
            Err(error) => Err(error.into()),
        },
        (Ok(token), Ok(tenant_id)) => {
            let partner = token.partner_id.to_string();
            tracing::info!(partner_id = %partner, "legacy callerline route served");
            metrics::counter!("agent_api_legacy_callerline_requests_total", "partner_id" => partner)
                .increment(1);
            list_lines(&state, token, tenant_id, &request).await
        }
    };
    let mut response = outcome.unwrap_or_else(|error| error.error_response());
    add_headers(&mut response, &state.legacy, served, successor);
    response
}

fn add_headers(
    response: &mut HttpResponse,
    legacy: &LegacySettings,
    served: bool,
    successor: Option<Uuid>,
) {
    let headers = response.headers_mut();
    if served {
        // RFC 9745: a structured-field date, `@` and Unix seconds.
        let deprecation = format!("@{}", legacy.deprecated_at.timestamp());
        headers.insert(
            header::HeaderName::from_static("deprecation"),
            HeaderValue::from_str(&deprecation).expect("digits are a valid header value"),
        );
    }
    // RFC 8594: an HTTP-date.
    let sunset = header::HttpDate::from(SystemTime::from(legacy.sunset_at)).to_string();
    headers.insert(
        header::HeaderName::from_static("sunset"),
        HeaderValue::from_str(&sunset).expect("an HTTP-date is a valid header value"),
    );
    if let Some(tenant_id) = successor {
        let link = format!("</agent-api/tenant/{tenant_id}/callerline>; rel=\"successor-version\"");
        headers.insert(
            header::LINK,
            HeaderValue::from_str(&link).expect("a UUID path is a valid header value"),
        );
    }
}
