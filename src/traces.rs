//! Traces an operator's collector reads: OpenTelemetry over OTLP (HTTP/protobuf), off unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector.
//! The standard variables do the rest: `OTEL_SERVICE_NAME` (`agent-api` when unset),
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (parent-based sampling: a caller's
//! `traceparent` decides, else the ratio), `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`.
//!
//! Spans are exported from a bounded queue on a thread of their own: a collector that is slow
//! or down drops spans (2,048 queued at most, by default) and never holds a request, and says
//! nothing in the log. A request is one span continuing the caller's trace, and its children
//! are the partner's authentication, the cache decision and each SQL statement; the response
//! names the request's span in `traceresponse`.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment names a collector (and does not switch the SDK off).
fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The layer exporting this service's spans, when a collector is configured. The log's
/// `request` span is left out: the exported request span is `traced_request`'s.
pub fn layer<S>() -> Option<impl Layer<S>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !configured() {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .ok()?;
    let resource = match std::env::var_os("OTEL_SERVICE_NAME") {
        Some(_) => Resource::builder().build(),
        None => Resource::builder().with_service_name("agent-api").build(),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("agent-api");
    PROVIDER.get_or_init(|| provider);
    let ours = |meta: &tracing::Metadata<'_>| {
        meta.is_span() && meta.target().starts_with("agent_api") && meta.name() != "request"
    };
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(ours)),
    )
}

/// Sends what is queued, at most for a few seconds, as the process ends.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown_with_timeout(Duration::from_secs(3));
    }
}

/// Makes the caller's W3C `traceparent` (and `tracestate`) the parent of `span`, if it sent
/// one: the request joins the partner's own trace.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    // Tracing off (no collector): the span does not exist, and nothing is parsed.
    if span.is_disabled() {
        return;
    }
    let caller = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(caller);
}

/// `traceresponse` (W3C Trace Context Level 2) naming `span`, when it is exported.
pub fn trace_response(span: &tracing::Span) -> Option<HeaderValue> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let traced = context.span();
    let traced = traced.span_context();
    traced.is_valid().then(|| {
        let value = format!(
            "00-{}-{}-{:02x}",
            traced.trace_id(),
            traced.span_id(),
            traced.trace_flags().to_u8()
        );
        HeaderValue::from_str(&value).expect("hex digits and dashes")
    })
}

struct Headers<'h>(&'h HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
