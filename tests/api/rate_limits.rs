//! Rate limits (SPEC §2's 429): a token bucket per partner, and one per client address for
//! requests that fail authentication.

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

/// One listed line for `partner` on a fresh tenant; returns the list path.
async fn listed(pool: &PgPool, partner: Uuid) -> String {
    let tenant = tenant(pool, "云节点").await;
    line(tenant, partner).insert(pool).await;
    format!("/agent-api/tenant/{tenant}/callerline")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_partner_over_its_rate_limit_gets_429_then_recovers(pool: PgPool) {
    let partner = partner(&pool).await;
    let other = crate::support::partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::configured(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 3;
    })
    .await;
    let token = format!("Bearer {}", app.token_for(partner));
    for n in 0..3 {
        assert_eq!(
            app.request(&path, Some(&token)).await.status(),
            200,
            "request {n} is within the burst"
        );
    }
    let limited = app.request(&path, Some(&token)).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(assert_error(limited, 429, 429).await, "请求过于频繁");
    // Buckets are per partner.
    assert_ne!(app.get_as(other, &path).await.status(), 429);
    // A bounded wait for the bucket to refill, as Retry-After says.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(app.request(&path, Some(&token)).await.status(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn failed_authentication_is_limited_per_client_address(pool: PgPool) {
    let app = TestApp::configured(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.anonymous_per_second = 1;
        s.rate_limit.anonymous_burst = 2;
    })
    .await;
    let path = format!("/agent-api/tenant/{}/callerline", Uuid::new_v4());
    assert_eq!(app.get(&path).await.status(), 401);
    assert_eq!(app.get(&path).await.status(), 401);
    let limited = app.get(&path).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_error(limited, 429, 429).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_revoked_token_spends_nothing_of_its_partners_budget(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::configured(pool.clone(), |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 40;
        // The client's own address is not what this is about.
        s.rate_limit.anonymous_burst = 1000;
    })
    .await;
    app.await_listing_cache("live").await;
    let revoked = format!("Bearer {}", app.old_token(partner));
    app.revoke_old_tokens(&pool, partner, &path, &revoked).await;
    for attempt in 0..60 {
        let response = app.request(&path, Some(&revoked)).await;
        assert_eq!(response.status(), 401, "attempt {attempt}: 401, not 429");
    }
    let fresh = format!("Bearer {}", app.token_for(partner));
    for attempt in 0..5 {
        let response = app.request(&path, Some(&fresh)).await;
        assert_eq!(response.status(), 200, "the new token, attempt {attempt}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn behind_a_trusted_balancer_each_forwarded_client_has_its_own_bucket(pool: PgPool) {
    let path = format!("/agent-api/tenant/{}/callerline", Uuid::new_v4());
    let limited = |trusted: &'static str| {
        let pool = pool.clone();
        async move {
            TestApp::configured(pool, move |s| {
                s.rate_limit.enabled = true;
                s.rate_limit.anonymous_per_second = 1;
                s.rate_limit.anonymous_burst = 2;
                s.rate_limit.trusted_proxies = trusted
                    .split(',')
                    .filter(|net| !net.is_empty())
                    .map(|net| net.parse().unwrap())
                    .collect();
            })
            .await
        }
    };
    let from = |app: &TestApp, client: &str| {
        app.client()
            .get(format!("{}{path}", app.address))
            .header("X-Forwarded-For", format!("198.51.100.77, {client}"))
            .send()
    };
    // The balancer (loopback here) is trusted: each client it forwards for is limited alone.
    let balanced = limited("127.0.0.0/8").await;
    for _ in 0..2 {
        assert_eq!(from(&balanced, "203.0.113.5").await.unwrap().status(), 401);
    }
    assert_eq!(from(&balanced, "203.0.113.5").await.unwrap().status(), 429);
    assert_eq!(
        from(&balanced, "203.0.113.6").await.unwrap().status(),
        401,
        "another client"
    );
    // Nothing trusted: the header is a stranger's own claim, and changes nothing.
    let direct = limited("").await;
    for client in ["203.0.113.5", "203.0.113.6"] {
        assert_eq!(from(&direct, client).await.unwrap().status(), 401);
    }
    assert_eq!(
        from(&direct, "203.0.113.7").await.unwrap().status(),
        429,
        "one bucket"
    );
}
