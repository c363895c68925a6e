//! `/metrics` in its own test binary: the Prometheus recorder is process-wide, so only here do
//! no other tests' requests move the counters under test; and the tests here take turns.

mod support;

use std::collections::BTreeMap;

use sqlx::{Connection, PgPool};
use support::*;
const ROUTE: &str = "/agent-api/tenant/{id}/callerline";

/// Held by each test that reads counters: one at a time moves them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One sample of the Prometheus text format: `name{label="value",…} number`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the exposition text strictly: every line is a comment, blank, or a valid sample.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("not Prometheus text: {line}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let valid_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if name.is_empty() || !name.chars().all(valid_name) {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after_key.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => value.push(match chars.next()?.1 {
                        'n' => '\n',
                        other => other,
                    }),
                    (index, '"') => break index,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.trim_start_matches(',').to_string(), value);
            inner = &after_key[end + 1..];
        }
    }
    let value = rest.trim().split(' ').next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = app
        .client()
        .get(format!("{}/metrics", app.ops_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse(&response.text().await.unwrap())
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn counters_move_by_exactly_the_requests_sent(pool: PgPool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = TestApp::spawn(pool).await;
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    let ok = [("route", ROUTE), ("method", "GET"), ("status", "200")];
    let unauthorized = [("route", ROUTE), ("method", "GET"), ("status", "401")];
    let requests = "agent_api_http_requests_total";
    let latency_count = "agent_api_http_request_duration_seconds_count";

    app.await_listing_cache("live").await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    let before = scrape(&app).await;
    for _ in 0..3 {
        let response = app.request(&path, Some(&authorization)).await;
        assert_eq!(response.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(app.get(&path).await.status(), 401);
    }
    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or(0.0) - value(&before, name, labels).unwrap_or(0.0)
    };
    assert_eq!(moved(requests, &ok), 3.0);
    assert_eq!(moved(requests, &unauthorized), 2.0);
    assert_eq!(
        moved(latency_count, &ok),
        3.0,
        "the latency histogram counts the same requests"
    );
    let mut inf = ok.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(
            &after,
            "agent_api_http_request_duration_seconds_bucket",
            &inf
        ),
        value(&after, latency_count, &ok)
    );
    // The first read runs the statement; the repeats are answered from memory.
    let cache = "agent_api_listing_cache_total";
    assert_eq!(moved(cache, &[("outcome", "miss")]), 1.0);
    assert_eq!(moved(cache, &[("outcome", "hit")]), 2.0);
    assert_eq!(
        moved(
            "agent_api_db_query_duration_seconds_count",
            &[("statement", "list_caller_lines")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "agent_api_listing_cache_live", &[]),
        Some(1.0)
    );

    for gauge in [
        "agent_api_db_pool_connections",
        "agent_api_db_pool_idle_connections",
    ] {
        assert!(value(&after, gauge, &[]).is_some(), "{gauge}");
    }
    assert_eq!(
        value(
            &after,
            "agent_api_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // Routes are templates: no ids or raw paths as label values.
    assert!(
        after
            .iter()
            .all(|s| !s.labels.values().any(|v| v.contains(&tenant.to_string())))
    );
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    assert!(parse_sample("up 1").is_some());
    assert!(parse_sample(r#"x{a="b\"c",d="{e}"} 2.5"#).is_some_and(|s| s.labels["a"] == "b\"c"));
    for bad in [
        "",
        "no_value",
        "bad-name 1",
        r#"x{a="unterminated} 1"#,
        "x NaNx",
    ] {
        assert!(parse_sample(bad).is_none(), "{bad}");
    }
}

/// Samples per metric name, with their label sets.
fn series(samples: &[Sample]) -> usize {
    samples
        .iter()
        .filter(|s| s.name.starts_with("agent_api_"))
        .count()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn strangers_methods_and_paths_add_no_series(pool: PgPool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = TestApp::spawn(pool).await;
    // Every label set a stranger can reach once: any method, any path, refused.
    for method in ["GET", "M0", "POST"] {
        send(&app, method, "/nope/0").await;
        send(&app, method, "/agent-api/tenant/0/callerline").await;
    }
    let before = series(&scrape(&app).await);
    for n in 1..2000 {
        send(&app, &format!("M{n}"), &format!("/nope/{n}")).await;
        send(
            &app,
            &format!("X{n}"),
            &format!("/agent-api/tenant/{n}/callerline"),
        )
        .await;
    }
    let after = series(&scrape(&app).await);
    assert!(
        after <= before + 4,
        "{before} series before 4,000 strange requests, {after} after"
    );
}

async fn send(app: &TestApp, method: &str, path: &str) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = app
        .client()
        .request(method, format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_client_error(),
        "{path}: {}",
        response.status()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn requests_without_a_valid_token_cost_the_database_nothing(pool: PgPool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tenant = default_tenant(&pool, "默认").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = TestApp::configured(pool, |s| {
        s.legacy.callerline = agent_api::config::LegacyMode::On;
    })
    .await;
    app.await_listing_cache("live").await;
    // Every statement but the scrape's own (the count-rows gauge).
    let statements = |samples: &[Sample]| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == "agent_api_db_query_duration_seconds_count")
            .filter(|s| s.labels["statement"] != "most_count_rows_of_a_pair")
            .map(|s| s.value)
            .sum()
    };
    let before = statements(&scrape(&app).await);
    let forged = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    for path in [
        format!("/agent-api/tenant/{tenant}/callerline"),
        "/agent-api/tenant".to_string(),
        "/agent-api/callerline".to_string(),
        "/agent-api/callerline?page=0".to_string(),
    ] {
        for authorization in [None, Some("Bearer"), Some(forged)] {
            for _ in 0..25 {
                let response = app.request(&path, authorization).await;
                assert_eq!(response.status(), 401, "{path}");
            }
        }
    }
    let after = statements(&scrape(&app).await);
    assert_eq!(
        after, before,
        "statements run for requests without a valid token"
    );
}

/// Statements of one kind run so far.
fn statements(samples: &[Sample], statement: &str) -> f64 {
    value(
        samples,
        "agent_api_db_query_duration_seconds_count",
        &[("statement", statement)],
    )
    .unwrap_or(0.0)
}

/// After a restart or a write, many clients ask for the same page at once: one statement reads
/// it for all of them (it used to be one each while the first was in flight), whatever token
/// each carries, and standing was read for every partner when the feed listened.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_herd_of_requests_for_one_cold_page_costs_one_statement(pool: PgPool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    // A pool of its own: the test's counts sessions while the app's wait.
    let own_pool = agent_api::store::pool(&database_url(&pool), &test_settings().database).unwrap();
    let app = std::sync::Arc::new(TestApp::spawn(own_pool.clone()).await);
    app.await_listing_cache("live").await;
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    let before = scrape(&app).await;

    // The first read waits behind a lock, so the rest of the herd arrives while it is in flight.
    let mut locker = sqlx::PgConnection::connect(&database_url(&pool))
        .await
        .unwrap();
    sqlx::raw_sql("begin; lock table caller_lines in access exclusive mode")
        .execute(&mut locker)
        .await
        .unwrap();
    let herd: Vec<_> = (0..64)
        .map(|n| {
            let issued = chrono::Utc::now() - chrono::TimeDelta::seconds(n);
            let authorization = format!("Bearer {}", app.token_issued(partner, issued));
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move { app.request(&path, Some(&authorization)).await.status() })
        })
        .collect();
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    eventually("the first read waits on the lock", || async {
        waiting().await >= 1
    })
    .await;
    // Long enough for the herd to arrive and, were it not shared, to queue its own reads.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(waiting().await, 1, "one read for the whole herd");
    sqlx::raw_sql("commit").execute(&mut locker).await.unwrap();
    for request in herd {
        assert_eq!(request.await.unwrap(), 200);
    }
    let after = scrape(&app).await;
    let moved = |statement| statements(&after, statement) - statements(&before, statement);
    assert_eq!(moved("list_caller_lines"), 1.0);
    assert_eq!(moved("partner_standing"), 0.0, "standing was read at start");
    own_pool.close().await; // so the test database can be dropped
}

/// How many count rows a pair holds is watched: folding that stops shows as a number growing.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_most_count_rows_of_a_pair_is_a_gauge(pool: PgPool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    // Under repeatable read, fewer than 33 rows are left unfolded.
    insert_at_repeatable_read(&pool, tenant, partner, 5).await;
    let app = TestApp::spawn(pool).await;
    // Refreshed in the background (a scrape costs the database nothing), at start and then
    // every 15 s.
    eventually("the gauge shows the pair's rows", || async {
        value(&scrape(&app).await, "agent_api_line_count_rows_max", &[]) == Some(5.0)
    })
    .await;
}
