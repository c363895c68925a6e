//! What operators watch and probe: health and readiness, request ids, and the settings every
//! pooled session carries (SPEC §5).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use agent_api::startup::Application;
use agent_api::store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn health_and_readiness_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(json(health).await["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn readiness_is_503_while_the_database_is_unreachable() {
    agent_api::tls::install_crypto_provider();
    let mut settings = test_settings();
    settings.database.acquire_timeout_ms = 300;
    // Nothing listens on port 1: a database that is down.
    let pool = store::pool("postgres://postgres@127.0.0.1:1/none", &settings.database).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let application =
        Application::build(&settings, listener, pool, agent_api::clock::system_clock())
            .await
            .unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let started = Instant::now();
    let response = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answers from what it knows, at once"
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = json(response).await;
    assert_eq!(body["status"], "not ready", "{body}");
    assert_eq!(body["database"], "does not answer", "{body}");
    let health = reqwest::get(format!("{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "the process itself is up");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn request_ids_are_honoured_or_generated_and_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let url = format!("{}/healthz", app.address);
    let honoured = app
        .client()
        .get(&url)
        .header("X-Request-Id", "partner-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(honoured.headers()["x-request-id"], "partner-trace-42");
    let generated = app.client().get(&url).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(Uuid::try_parse(id).is_ok(), "{id}");
    let oversized = "x".repeat(500);
    let replaced = app
        .client()
        .get(&url)
        .header("X-Request-Id", &oversized)
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], oversized.as_str());
    // Printable ASCII only: a tab or bytes beyond ASCII are replaced, never echoed or logged.
    for unprintable in [&b"trace\tid"[..], &b"trace-\x80\xff"[..]] {
        let replaced = app
            .client()
            .get(&url)
            .header(
                "X-Request-Id",
                reqwest::header::HeaderValue::from_bytes(unprintable).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let echoed = replaced.headers()["x-request-id"].as_bytes();
        assert_ne!(echoed, unprintable);
        assert!(Uuid::try_parse_ascii(echoed).is_ok());
    }
    let error = app
        .client()
        .get(format!("{}/agent-api/nope", app.address))
        .header("X-Request-Id", "e-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error.headers()["x-request-id"],
        "e-1",
        "errors carry it too"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn pool_connections_carry_the_statement_timeout_and_generic_plans(pool: PgPool) {
    let mut settings = test_settings();
    settings.database.statement_timeout_ms = 1234;
    let own_pool = store::pool(&database_url(&pool), &settings.database).unwrap();
    let (timeout, plans): (String, String) = sqlx::query_as(
        "select current_setting('statement_timeout'), current_setting('plan_cache_mode')",
    )
    .fetch_one(&own_pool)
    .await
    .unwrap();
    assert_eq!(timeout, "1234ms");
    assert_eq!(plans, "force_generic_plan");
    own_pool.close().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn metrics_are_served_to_operators_only_and_health_on_both_ports(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = TestApp::spawn(pool).await;
    app.get_as(partner, &format!("/agent-api/tenant/{tenant}/callerline"))
        .await;
    // The partners' port has no /metrics: it names every active partner.
    let message = assert_error(app.get("/metrics").await, 404, 404).await;
    assert_eq!(message, "接口不存在");
    assert!(
        app.metrics()
            .await
            .contains("agent_api_http_requests_total")
    );
    for address in [&app.address, &app.ops_address] {
        for check in ["/healthz", "/readyz"] {
            let response = app
                .client()
                .get(format!("{address}{check}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{address}{check}");
            let body = response.text().await.unwrap();
            assert!(!body.contains(&partner.to_string()), "{check}: {body}");
        }
    }
}

/// `/readyz` answers from what the instance already knows: strangers asking it by the thousand
/// cost the database nothing (each used to cost a round trip).
#[sqlx::test(migrator = "MIGRATOR")]
async fn readiness_asked_ten_thousand_times_costs_the_database_nothing_more(pool: PgPool) {
    use futures_util::StreamExt;
    let app = TestApp::spawn(pool.clone()).await;
    // Counted once every session has reported: a busy one reports within a second.
    let transactions = || async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::query_scalar::<_, i64>(
            "select xact_commit + xact_rollback from pg_stat_database \
             where datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = transactions().await;
    let asked = futures_util::stream::iter(0..10_000)
        .map(|_| async { app.get("/readyz").await.status() })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(asked.iter().all(|status| *status == 200));
    let cost = transactions().await - before;
    assert!(cost < 300, "10,000 /readyz cost {cost} transactions");
    println!(
        "10,000 /readyz: {cost} database transactions (the instance's own probes and heartbeats meanwhile)"
    );
}
