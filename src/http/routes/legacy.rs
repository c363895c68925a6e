//! GET /agent-api/callerline, the pre-tenant route (SPEC §3): the list handler on the default
//! tenant, wrapped by `sunset`, which serves or retires it and adds its headers to every answer.

use std::time::SystemTime;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, ResponseError, web};
use uuid::Uuid;

use crate::config::LegacySettings;
use crate::domain::partners::PartnerToken;
use crate::http::error::ApiError;
use crate::http::extract::Authenticated;
use crate::http::state::AppState;

pub async fn sunset(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered on the app")
        .clone();
    let served = state.legacy.is_served((state.clock)());
    let mut response = if served {
        let response = next.call(request).await?.map_into_boxed_body();
        count_served(&response);
        response
    } else {
        // Authentication comes first even when gone (SPEC §3): strangers learn nothing.
        let (http_request, mut payload) = request.into_parts();
        let error = match Authenticated::from_request(&http_request, &mut payload).await {
            Ok(_) => ApiError::LegacyGone,
            Err(error) => error,
        };
        ServiceResponse::new(http_request, error.error_response())
    };
    // From memory only: a stranger's request must cost the database nothing.
    let successor = state.default_tenant.slots().last().flatten();
    add_headers(response.headers_mut(), &state.legacy, served, successor);
    Ok(response)
}

/// Who still calls the old route, so operators can see whom to move (SPEC §3).
fn count_served(response: &ServiceResponse) {
    if response.status() == StatusCode::UNAUTHORIZED {
        return;
    }
    let Some(token) = response
        .request()
        .extensions()
        .get::<PartnerToken>()
        .copied()
    else {
        return;
    };
    let partner = token.partner_id.to_string();
    tracing::info!(partner_id = %partner, "legacy callerline route served");
    metrics::counter!("agent_api_legacy_callerline_requests_total", "partner_id" => partner)
        .increment(1);
}

fn add_headers(
    headers: &mut HeaderMap,
    legacy: &LegacySettings,
    served: bool,
    successor: Option<Uuid>,
) {
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
