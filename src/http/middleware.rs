//! Per-request context: the request id (honoured from `X-Request-Id` or generated, and echoed),
//! one structured log line and the request metrics; and a guard that turns a handler's panic
//! into the 500 envelope instead of a dropped connection.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use futures_util::FutureExt;
use tracing::{Instrument, Level};

use super::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Routes polled by orchestrators and scrapers are logged at debug, not info.
const QUIET_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The route template, never the raw path: bounded label values, no ids in metrics.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        partner_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    response.headers_mut().insert(
        REQUEST_ID,
        HeaderValue::from_str(&request_id).expect("request ids are checked or generated ASCII"),
    );
    let labels = [
        ("route", route.clone()),
        ("method", method),
        ("status", status.to_string()),
    ];
    metrics::counter!("agent_api_http_requests_total", &labels).increment(1);
    metrics::histogram!("agent_api_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if QUIET_ROUTES.contains(&route.as_str()) {
        tracing::event!(parent: &span, Level::DEBUG, status, latency_ms, "request");
    } else {
        tracing::event!(parent: &span, Level::INFO, status, latency_ms, "request");
    }
    Ok(response.map_into_boxed_body())
}

/// Wraps each route's handler (not the app: routing needs the request unshared), turning a
/// panic into the 500 envelope; the log line carries the request id of the enclosing span.
pub async fn catch_panic(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let http_request = request.request().clone();
    match AssertUnwindSafe(next.call(request)).catch_unwind().await {
        Ok(outcome) => outcome.map(ServiceResponse::map_into_boxed_body),
        Err(_panic) => {
            let error = ApiError::Internal(anyhow::anyhow!("handler panicked"));
            Ok(ServiceResponse::new(http_request, error.error_response()))
        }
    }
}

/// Up to 128 visible ASCII characters; anything else is replaced, so logs stay clean.
fn is_acceptable_request_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, body::to_bytes, middleware::from_fn, test, web};

    use super::*;

    async fn buggy_handler() -> HttpResponse {
        panic!("a bug in a handler")
    }

    #[actix_web::test]
    async fn a_panicking_handler_answers_the_500_envelope_with_the_request_id() {
        let app = test::init_service(App::new().wrap(from_fn(request_context)).route(
            "/boom",
            web::get().to(buggy_handler).wrap(from_fn(catch_panic)),
        ))
        .await;
        let request = test::TestRequest::get()
            .uri("/boom")
            .insert_header((REQUEST_ID, "trace-7"))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers().get(&REQUEST_ID).unwrap(), "trace-7");
        let body = to_bytes(response.into_body()).await.unwrap();
        assert_eq!(
            body,
            r#"{"code":500,"status":"error","message":"服务器内部错误","data":[]}"#
        );
    }
}
