//! The alerts and the dashboard against a real Prometheus scraping a real instance's operations
//! listener: the memory alert fires when the change feed is cut and resolves when it listens
//! again, and every query of the Grafana dashboard is valid PromQL over metrics the instance
//! really exports.

mod support;

use std::collections::BTreeSet;

use sqlx::PgPool;
use support::prometheus::Prometheus;
use support::proxy::before_database;
use support::redis::Redis;
use support::*;

/// The rules as shipped, but held 3 s where they say a minute: the same expressions, labels
/// and annotations, in a test that does not wait for minutes.
fn shipped_rules() -> String {
    include_str!("../deploy/prometheus/alerts.yml").replace("for: 1m", "for: 3s")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_memory_alert_fires_while_the_feed_is_cut_and_every_dashboard_query_is_valid(
    pool: PgPool,
) {
    let tenant = default_tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let (proxy, feed_url) = before_database(&pool).await;
    let redis = Redis::start();
    let redis_url = redis.url();
    let dead_standby = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        support::ports::free_port()
    );
    // Every part whose metrics the dashboard shows: a standby (down), a shared rate limit,
    // the legacy route.
    let app = TestApp::configured(pool.clone(), |s| {
        s.database.feed_url = Some(feed_url.into());
        s.database.replica_urls = vec![dead_standby.into()];
        s.rate_limit.enabled = true;
        s.rate_limit.burst = 3;
        s.rate_limit.redis_url = Some(redis_url.into());
        s.rate_limit.instances = Some(1);
        s.legacy.callerline = agent_api::config::LegacyMode::On;
    })
    .await;
    app.await_listing_cache("live").await;
    // A burst of 3: the legacy call and two pages pass, the rest are refused with 429.
    app.get_as(partner, "/agent-api/callerline").await;
    for _ in 0..4 {
        app.get_as(partner, &format!("/agent-api/tenant/{tenant}/callerline"))
            .await;
    }
    app.get("/agent-api/tenant").await;
    let ops = app.ops_address.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&[ops], &shipped_rules());
    eventually("Prometheus has scraped the instance", || async {
        let up = prometheus.api("query", &[("query", "up")]).await.unwrap();
        up["result"][0]["value"][1] == "1"
    })
    .await;

    let exported: BTreeSet<String> = prometheus
        .api("label/__name__/values", &[])
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_string())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../deploy/grafana/agent-api.json")).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            prometheus
                .api("query", &[("query", expr)])
                .await
                .unwrap_or_else(|e| panic!("{}: {expr}: {e}", panel["title"]));
            for metric in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("agent_api_"))
            {
                assert!(
                    exported.contains(metric),
                    "{}: {metric} is not exported",
                    panel["title"]
                );
            }
        }
    }

    assert!(
        !prometheus
            .firing()
            .await
            .contains(&"AgentApiMemoryBypassed".to_string())
    );
    proxy.swallow();
    eventually("the memory alert fires", || async {
        prometheus
            .firing()
            .await
            .contains(&"AgentApiMemoryBypassed".to_string())
    })
    .await;
    proxy.pass();
    app.await_listing_cache("live").await;
    eventually("the memory alert resolves", || async {
        !prometheus
            .firing()
            .await
            .contains(&"AgentApiMemoryBypassed".to_string())
    })
    .await;
}
