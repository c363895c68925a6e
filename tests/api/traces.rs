//! Traces as an operator's collector receives them: `OTEL_EXPORTER_OTLP_ENDPOINT` set on `serve`
//! is enough to see a request's spans, in the caller's trace (its `traceparent`), with the
//! partner's authentication, the cache decision and the SQL statement below; a collector that
//! is down costs partners nothing and the log nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_api::store::demo;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::ports::{await_listening, free_port};
use crate::support::process::{Running, Serving, spawn_serve};
use crate::support::*;

/// The project's venv (scripts/test installs it, with opentelemetry-proto).
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.data/venv/bin/python");
const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/otlp_receiver.py"
);

/// An OTLP/HTTP receiver on a free port, and the spans it has received so far.
struct Collector {
    _process: Running,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(PYTHON)
            .arg(RECEIVER)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{PYTHON} (scripts/test makes the venv): {e}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let into = spans.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                into.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        await_listening(port, "the OTLP receiver");
        Self {
            _process: Running(child),
            port,
            spans,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans of `trace_id`, once one named `name` has come.
    async fn trace(&self, trace_id: &str, name: &str) -> Vec<Value> {
        let of_trace = || -> Vec<Value> {
            let spans = self.spans.lock().unwrap();
            spans
                .iter()
                .filter(|span| span["trace_id"] == trace_id)
                .cloned()
                .collect()
        };
        eventually(&format!("the collector has {name}"), || async {
            of_trace().iter().any(|span| span["name"] == name)
        })
        .await;
        of_trace()
    }
}

fn exporting_to(endpoint: &str) -> [(&str, &str); 4] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // Sent within a tenth of a second, so the test need not wait five.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
    ]
}

/// `serve` over the demo data, exporting its spans to `endpoint`; and the demo partner's token.
async fn demo_served_exporting_to(pool: &PgPool, endpoint: &str) -> (Serving, String) {
    demo::seed(pool).await.unwrap();
    let serving = spawn_serve(&roles::reader_url(pool).await, &exporting_to(endpoint));
    let keys = agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap();
    let token = keys
        .issue(
            demo::DEMO_PARTNER_ID,
            Duration::from_secs(600),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
    (serving, token)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_partners_request_is_traced_in_its_callers_trace_down_to_the_statement(pool: PgPool) {
    let collector = Collector::start();
    let (serving, token) = demo_served_exporting_to(&pool, &collector.endpoint()).await;
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let path = format!(
        "/agent-api/tenant/{}/callerline?per_page=2",
        demo::DEMO_TENANT_ID
    );
    let response = reqwest::Client::new()
        .get(serving.url(&path))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let named = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(named.starts_with(&format!("00-{caller_trace}-")), "{named}");

    let request_name = "GET /agent-api/tenant/{id}/callerline";
    // The request's span ends last: once it has come, the whole trace has.
    let spans = collector.trace(caller_trace, request_name).await;
    let span = |name: &str| -> Value {
        spans
            .iter()
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
            .clone()
    };
    let request = span(request_name);
    assert_eq!(
        request["parent_span_id"], caller_span,
        "continues the caller's span"
    );
    assert_eq!(request["kind"], 2, "server");
    assert_eq!(request["service"], "agent-api");
    assert!(
        named.contains(request["span_id"].as_str().unwrap()),
        "{named}"
    );
    let attributes = &request["attributes"];
    assert_eq!(attributes["http.request.method"], "GET");
    assert_eq!(
        attributes["http.route"],
        "/agent-api/tenant/{id}/callerline"
    );
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(
        attributes["agent_api.partner_id"],
        demo::DEMO_PARTNER_ID.to_string()
    );
    assert!(attributes["agent_api.request_id"].is_string());

    let authenticate = span("authenticate");
    assert_eq!(authenticate["parent_span_id"], request["span_id"]);
    assert_eq!(authenticate["attributes"]["agent_api.standing"], "memory");
    let decisions: Vec<&Value> = spans
        .iter()
        .filter(|span| span["name"] == "cache")
        .map(|span| &span["attributes"]["agent_api.cache.decision"])
        .collect();
    assert!(decisions.contains(&&Value::from("missed")), "{decisions:?}");
    let statement = spans
        .iter()
        .find(|span| span["name"] == "list_caller_lines" && span["kind"] == 3)
        .unwrap_or_else(|| panic!("no client span of the statement in {spans:#?}"));
    let attributes = &statement["attributes"];
    assert_eq!(attributes["db.system.name"], "postgresql");
    assert_eq!(attributes["db.query.summary"], "list_caller_lines");
    assert_eq!(attributes["agent_api.db.server"], "primary");
    assert_eq!(
        attributes["db.response.returned_rows"], 2,
        "a page of two lines"
    );
    let mut ancestor = statement["parent_span_id"].clone();
    while ancestor != request["span_id"] {
        let parent = spans
            .iter()
            .find(|span| span["span_id"] == ancestor)
            .unwrap_or_else(|| panic!("the statement's ancestors lead to the request: {spans:#?}"));
        ancestor = parent["parent_span_id"].clone();
    }
}

/// Spans for a collector that is down are dropped from a bounded queue: no request waits for
/// it, none fails, and the log says nothing of it.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_collector_that_is_down_costs_nothing_visible(pool: PgPool) {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (serving, token) = demo_served_exporting_to(&pool, &nobody).await;
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for n in 0..300 {
        let path = format!(
            "/agent-api/tenant/{}/callerline?per_page={}",
            demo::DEMO_TENANT_ID,
            1 + n % 5
        );
        let asked = Instant::now();
        let response = client
            .get(serving.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        slowest = slowest.max(asked.elapsed());
        assert_eq!(response.status(), 200);
    }
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    // Past the exporter's timeout, so its failures would have been said by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = serving.log();
    for word in ["opentelemetry", "OTLP", "export"] {
        assert!(!log.contains(word), "the log mentions {word}: {log}");
    }
}
