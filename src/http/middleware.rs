//! Per-request context: the request id (honoured from `X-Request-Id` or generated, and echoed),
//! one structured log line and the request metrics; and a guard that turns a handler's panic
//! into the 500 envelope instead of a dropped connection.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::FutureExt;
use tracing::{Instrument, Level};

use super::error::{ApiError, Refusal};
use super::state::AppState;
use crate::domain::partners::PartnerToken;
use crate::store::postgres::schema::Schema;
use crate::telemetry;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Trace Context Level 2: the trace and span a traced request was given.
pub const TRACE_RESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Routes polled by orchestrators and scrapers are logged at debug, not info.
const QUIET_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub async fn request_context(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Labels and log fields from closed sets: the route template (never the raw path), the
    // method as HTTP names it (a stranger may send any token there).
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    // Every route is GET or HEAD: a body is never read, so it is answered at once and the
    // connection closed, rather than drained of whatever a client trickles in behind its head.
    let carries_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    // The request as traces show it (OpenTelemetry's HTTP conventions), continuing the
    // caller's trace; the log's `request` span below it carries what log lines say.
    let traced = tracing::debug_span!(
        "http request",
        "otel.name" = format!("{} {route}", request.method()),
        "otel.kind" = "server",
        "otel.status_code" = tracing::field::Empty,
        "http.request.method" = %method,
        "http.route" = %route,
        "http.response.status_code" = tracing::field::Empty,
        "agent_api.request_id" = %request_id,
        "agent_api.partner_id" = tracing::field::Empty,
    );
    crate::traces::continue_trace(&traced, request.headers());
    let span = tracing::info_span!(
        parent: &traced,
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        partner_id = tracing::field::Empty,
    );
    let unread = carries_body.then(|| request.take_payload());
    let started = Instant::now();
    let mut response = next
        .call(request)
        .instrument(span.clone())
        .instrument(traced.clone())
        .await?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    response.headers_mut().insert(
        REQUEST_ID,
        HeaderValue::from_str(&request_id).expect("request ids are checked or generated ASCII"),
    );
    traced.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        traced.record("otel.status_code", "ERROR");
    }
    if let Some(token) = response.request().extensions().get::<PartnerToken>() {
        traced.record(
            "agent_api.partner_id",
            tracing::field::display(token.partner_id),
        );
    }
    if let Some(names) = crate::traces::trace_response(&traced) {
        response.headers_mut().insert(TRACE_RESPONSE, names);
    }
    let labels = [
        ("route", route.clone()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("agent_api_http_requests_total", &labels).increment(1);
    metrics::histogram!("agent_api_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let refusal = response.response().extensions().get::<Refusal>().cloned();
    // A partner's answers are all logged; a stranger's (no token that passed: unknown paths,
    // wrong methods, refusals, the reference's files) are many times cheaper to ask for than
    // to write down, so they share one budget.
    let partner = response
        .request()
        .extensions()
        .get::<PartnerToken>()
        .is_some();
    if QUIET_ROUTES.contains(&route.as_str()) {
        tracing::event!(parent: &span, Level::DEBUG, status, latency_ms, "request");
    } else if partner || telemetry::strangers().allow() {
        let refusal = refusal.map(|Refusal(reason)| reason);
        tracing::event!(parent: &span, Level::INFO, status, latency_ms, refusal, "request");
    }
    let response = response.map_into_boxed_body();
    Ok(match unread {
        Some(unread) => response.map_body(|head, body| {
            head.set_connection_type(ConnectionType::Close);
            BoxBody::new(Closing {
                body,
                _unread: unread,
            })
        }),
        None => response,
    })
}

/// A response body that keeps the unread request body alive until it has been sent: actix then
/// closes the connection, where it would otherwise drain a chunked body a client may trickle in
/// for ever.
struct Closing {
    body: BoxBody,
    /// Held, never read.
    _unread: Payload,
}

impl MessageBody for Closing {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The method's name when HTTP defines it, else `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

/// While the database lacks a migration this build needs, partners get the 503 envelope (with
/// `Retry-After`) from every route, never a 500 from a statement that cannot run.
pub async fn refuse_while_schema_behind(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let behind = request
        .app_data::<actix_web::web::Data<AppState>>()
        .is_some_and(|state| matches!(state.health.schema(), Schema::Behind { .. }));
    if behind {
        let response = ApiError::SchemaBehind.error_response();
        return Ok(request.into_response(response));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
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
