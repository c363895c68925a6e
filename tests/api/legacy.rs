//! GET /agent-api/callerline behind its sunset switch (SPEC §3). The clock is injected; no test
//! reads the wall clock.

use agent_api::config::LegacyMode;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;
const GONE: &str = "该接口已下线,请使用 GET /agent-api/tenant/{id}/callerline";

fn sunset() -> DateTime<Utc> {
    beijing("2023-02-01 00:00:00")
}

async fn app_at(pool: PgPool, mode: LegacyMode, now: DateTime<Utc>) -> TestApp {
    TestApp::spawn_with(pool, |s| s.legacy.callerline = mode, clock_at(now)).await
}

/// A default tenant with two lines of one partner, and a second tenant with one more.
async fn two_tenants(pool: &PgPool) -> (Uuid, Uuid, Uuid, Vec<Uuid>) {
    let default = default_tenant(pool, "云节点一").await;
    let other = tenant(pool, "云节点二").await;
    let partner = partner(pool).await;
    let lines = vec![
        line(default, partner).nth(1).insert(pool).await,
        line(default, partner).nth(2).insert(pool).await,
    ];
    line(other, partner).nth(3).insert(pool).await;
    (default, other, partner, lines)
}

fn assert_served_headers(response: &reqwest::Response, default: Uuid) {
    let headers = response.headers();
    // RFC 9745: @<unix seconds> of legacy.deprecated_at (2022-06-01T00:00:00+08:00).
    assert_eq!(headers["deprecation"], "@1654012800");
    assert_gone_headers(response, default);
}

fn assert_gone_headers(response: &reqwest::Response, default: Uuid) {
    let headers = response.headers();
    assert_eq!(headers["sunset"], "Tue, 31 Jan 2023 16:00:00 GMT");
    assert_eq!(
        headers["link"],
        format!("</agent-api/tenant/{default}/callerline>; rel=\"successor-version\"").as_str()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn auto_serves_the_default_tenant_before_the_sunset(pool: PgPool) {
    let (default, _, partner, lines) = two_tenants(&pool).await;
    let app = app_at(pool, LegacyMode::Auto, sunset() - TimeDelta::seconds(1)).await;
    let response = app
        .get_as(partner, "/agent-api/callerline?per_page=1&page=2")
        .await;
    assert_eq!(response.status(), 200);
    assert_served_headers(&response, default);
    let body = json(response).await;
    assert_eq!(ids(&body), lines[1..]);
    assert_eq!(body["meta"]["total"], 2);
    assert_eq!(body["data"][0]["tenant"]["id"], default.to_string());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_legacy_route_answers_exactly_what_the_tenant_route_answers(pool: PgPool) {
    let (default, _, partner, _) = two_tenants(&pool).await;
    let app = app_at(pool, LegacyMode::On, sunset()).await;
    for query in [
        "",
        "?per_page=1",
        "?page=2&per_page=1",
        "?unused=1",
        "?page=0",
        "?user_id=x",
    ] {
        let legacy = app
            .get_as(partner, &format!("/agent-api/callerline{query}"))
            .await;
        let current = app
            .get_as(
                partner,
                &format!("/agent-api/tenant/{default}/callerline{query}"),
            )
            .await;
        assert_eq!(legacy.status(), current.status(), "{query}");
        assert_eq!(json(legacy).await, json(current).await, "{query}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn auto_is_gone_at_and_after_the_sunset(pool: PgPool) {
    let (default, _, partner, _) = two_tenants(&pool).await;
    for now in [sunset(), sunset() + TimeDelta::days(400)] {
        let app = app_at(pool.clone(), LegacyMode::Auto, now).await;
        let response = app.get_as(partner, "/agent-api/callerline").await;
        assert_gone_headers(&response, default);
        assert!(response.headers().get("deprecation").is_none());
        assert_eq!(assert_error(response, 410, 410).await, GONE);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn on_serves_after_the_sunset_and_off_is_gone_before_it(pool: PgPool) {
    let (default, _, partner, _) = two_tenants(&pool).await;
    let on = app_at(
        pool.clone(),
        LegacyMode::On,
        sunset() + TimeDelta::days(1000),
    )
    .await;
    let response = on.get_as(partner, "/agent-api/callerline").await;
    assert_eq!(response.status(), 200);
    assert_served_headers(&response, default);

    let off = app_at(pool, LegacyMode::Off, sunset() - TimeDelta::days(100)).await;
    let response = off.get_as(partner, "/agent-api/callerline").await;
    assert_gone_headers(&response, default);
    assert_eq!(assert_error(response, 410, 410).await, GONE);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn authentication_comes_before_gone_and_errors_carry_the_headers(pool: PgPool) {
    let (default, _, partner, _) = two_tenants(&pool).await;
    let deleted = crate::support::partner(&pool).await;
    soft_delete_user(&pool, deleted).await;
    let gone = app_at(pool.clone(), LegacyMode::Off, sunset()).await;
    let anonymous = gone.get("/agent-api/callerline").await;
    assert_gone_headers(&anonymous, default);
    assert_error(anonymous, 401, 401).await;
    assert_error(
        gone.get_as(deleted, "/agent-api/callerline").await,
        401,
        401,
    )
    .await;

    let served = app_at(pool, LegacyMode::On, sunset()).await;
    let anonymous = served.get("/agent-api/callerline").await;
    assert_served_headers(&anonymous, default);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_error(anonymous, 401, 401).await;
    let bad_parameter = served.get_as(partner, "/agent-api/callerline?page=0").await;
    assert_served_headers(&bad_parameter, default);
    assert_error(bad_parameter, 200, 1001).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_a_default_tenant_the_legacy_route_is_1004(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = app_at(pool, LegacyMode::On, sunset()).await;
    let response = app.get_as(partner, "/agent-api/callerline").await;
    assert!(
        response.headers().get("link").is_none(),
        "no successor to link to"
    );
    assert!(response.headers().get("sunset").is_some());
    assert_eq!(assert_error(response, 200, 1004).await, "云节点不存在");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn served_legacy_calls_are_counted_per_partner(pool: PgPool) {
    let (_, _, partner, _) = two_tenants(&pool).await;
    let app = app_at(pool, LegacyMode::On, sunset()).await;
    let count = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("agent_api_legacy_callerline_requests_total")
                    && line.contains(&partner.to_string())
            })
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |value| value.parse().unwrap())
    };
    let before = count(&app.metrics().await);
    for _ in 0..3 {
        app.get_as(partner, "/agent-api/callerline").await;
    }
    app.get("/agent-api/callerline").await; // anonymous: not served, not counted
    let after = count(&app.metrics().await);
    assert_eq!(after - before, 3);
}
