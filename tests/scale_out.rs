//! Several instances: one rate limit shared in Redis (also while Redis stalls, drops bytes, or a
//! stranger answers at its address), and HAProxy in front of two instances that both hear every
//! committed change and lose no request when one is killed. Every component is a real one the
//! test starts on free ports itself: redis-server, haproxy. (Standbys: tests/replicas.rs.)

mod support;

use std::time::{Duration, Instant};

use sqlx::PgPool;
use support::balancer::Balancer;
use support::process::{Serving, spawn_serve};
use support::redis::Redis;
use support::*;
use uuid::Uuid;

/// A partner with one listed line; the list path.
async fn listed(pool: &PgPool) -> (Uuid, String) {
    let tenant = tenant(pool, "云节点").await;
    let partner = partner(pool).await;
    line(tenant, partner).insert(pool).await;
    (partner, format!("/agent-api/tenant/{tenant}/callerline"))
}

/// An instance whose partners have a burst of 10 and (practically) no refill.
async fn limited_instance(pool: PgPool, redis: Option<String>, instances: u32) -> TestApp {
    TestApp::configured(pool, move |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 10;
        s.rate_limit.redis_url = redis.map(Into::into);
        s.rate_limit.redis_timeout_ms = 100;
        s.rate_limit.instances = Some(instances);
    })
    .await
}

/// How many of `count` requests, alternating between the instances, are let through.
async fn allowed(instances: &[&TestApp], partner: Uuid, path: &str, count: usize) -> usize {
    let token = format!("Bearer {}", instances[0].token_for(partner));
    let mut allowed = 0;
    for n in 0..count {
        let status = instances[n % instances.len()]
            .request(path, Some(&token))
            .await
            .status();
        assert!(status == 200 || status == 429, "{status}");
        allowed += usize::from(status == 200);
    }
    allowed
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_instances_allow_one_quota_between_them(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let redis = Redis::start();
    let a = limited_instance(pool.clone(), Some(redis.url()), 2).await;
    let b = limited_instance(pool.clone(), Some(redis.url()), 2).await;
    assert_eq!(
        allowed(&[&a, &b], partner, &path, 20).await,
        10,
        "the quota, once"
    );
    // Without Redis each instance has a bucket of its own: twice the quota.
    let (other, path) = listed(&pool).await;
    let c = limited_instance(pool.clone(), None, 2).await;
    let d = limited_instance(pool, None, 2).await;
    assert_eq!(allowed(&[&c, &d], other, &path, 20).await, 20);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stalled_redis_delays_no_request_and_is_shared_again_once_it_answers(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let redis = Redis::start();
    let a = limited_instance(pool.clone(), Some(redis.url()), 2).await;
    let b = limited_instance(pool.clone(), Some(redis.url()), 2).await;
    let token = format!("Bearer {}", a.token_for(partner));
    assert_eq!(a.request(&path, Some(&token)).await.status(), 200);
    assert_eq!(json(a.get("/readyz").await).await["rate_limit"], "shared");

    redis.pause();
    let mut let_through = 0;
    for _ in 0..8 {
        let started = Instant::now();
        let status = a.request(&path, Some(&token)).await.status();
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(100) + Duration::from_millis(400),
            "a request waited {waited:?} on a stalled Redis (timeout 100 ms)"
        );
        let_through += usize::from(status == 200);
    }
    assert_eq!(
        let_through, 5,
        "this instance's share: a burst of 10 ÷ 2 instances"
    );
    assert_eq!(json(a.get("/readyz").await).await["rate_limit"], "fallback");

    redis.resume();
    eventually("the limit is shared again", || async {
        json(a.get("/readyz").await).await["rate_limit"] == "shared"
    })
    .await;
    // Shared again: one bucket in Redis for both.
    let (fresh_partner, fresh_path) = listed(&pool).await;
    eventually("b uses Redis too", || async {
        json(b.get("/readyz").await).await["rate_limit"] == "shared"
    })
    .await;
    assert_eq!(allowed(&[&a, &b], fresh_partner, &fresh_path, 20).await, 10);
}

/// Requests this instance has answered on `route`, from its operations listener.
async fn answered(serving: &Serving, route: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", serving.ops_port);
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("agent_api_http_requests_total{")
                && line.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two instances of the binary behind the repository's HAProxy configuration.
async fn balanced(pool: &PgPool) -> (Serving, Serving, Balancer) {
    let behind_the_balancer = [("APP__RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.1/32")];
    let as_reader = roles::reader_url(pool).await;
    let a = spawn_serve(&as_reader, &behind_the_balancer);
    let b = spawn_serve(&as_reader, &behind_the_balancer);
    let balancer = Balancer::start([a.port, b.port]);
    (a, b, balancer)
}

const LINES_ROUTE: &str = "/agent-api/tenant/{id}/callerline";

#[sqlx::test(migrator = "MIGRATOR")]
async fn both_instances_serve_and_hear_every_committed_change_within_a_second(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let (a, b, balancer) = balanced(&pool).await;
    let client = reqwest::Client::new();
    let token = format!(
        "Bearer {}",
        keys()
            .issue(
                partner,
                Duration::from_secs(600),
                None,
                chrono::Utc::now() - chrono::TimeDelta::seconds(60)
            )
            .unwrap()
    );
    let get = |url: String| {
        let request = client.get(url).header("Authorization", &token);
        async move { request.send().await.unwrap() }
    };
    for _ in 0..20 {
        assert_eq!(get(balancer.url(&path)).await.status(), 200);
    }
    for instance in [&a, &b] {
        assert!(
            answered(instance, LINES_ROUTE).await >= 5.0,
            "both instances serve"
        );
    }
    // Each keeps the page in memory; a commit reaches both.
    let name = |url: String| {
        let response = get(url);
        async move { json(response.await).await["data"][0]["name"].clone() }
    };
    for instance in [&a, &b] {
        assert_eq!(name(instance.url(&path)).await, "线路");
    }
    let rename = format!("update caller_lines set name = '改名' where partner_id = '{partner}'");
    heard_by_both_within_a_second(&pool, &rename, [&a, &b], async |instance| {
        name(instance.url(&path)).await == "改名"
    })
    .await;
    let revoke = format!("update users set tokens_valid_after = now() where id = '{partner}'");
    heard_by_both_within_a_second(&pool, &revoke, [&a, &b], async |instance| {
        get(instance.url(&path)).await.status() == 401
    })
    .await;
}

/// Commits `change`, then waits until `shows` holds on every instance: within a second.
async fn heard_by_both_within_a_second(
    pool: &PgPool,
    change: &str,
    instances: [&Serving; 2],
    shows: impl AsyncFn(&Serving) -> bool,
) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(change.to_string()))
        .execute(pool)
        .await
        .unwrap();
    let committed = Instant::now();
    for instance in instances {
        eventually(change, || shows(instance)).await;
    }
    assert!(
        committed.elapsed() < Duration::from_secs(1),
        "{change}: {:?}",
        committed.elapsed()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn killing_an_instance_under_load_fails_no_request(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let (mut a, b, balancer) = balanced(&pool).await;
    let token = format!(
        "Bearer {}",
        keys()
            .issue(partner, Duration::from_secs(600), None, chrono::Utc::now())
            .unwrap()
    );
    let url = balancer.url(&path);
    let stop = Instant::now() + Duration::from_secs(4);
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, token) = (reqwest::Client::new(), url.clone(), token.clone());
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0, Vec::new());
                while Instant::now() < stop {
                    match client
                        .get(&url)
                        .header("Authorization", &token)
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 200 => answered += 1,
                        Ok(response) => failed.push(response.status().to_string()),
                        Err(error) => failed.push(error.to_string()),
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.child.kill().unwrap();
    let mut total = 0;
    for task in load {
        let (answered, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += answered;
    }
    assert!(answered(&b, LINES_ROUTE).await > 0.0);
    assert!(total > 100, "the load ran: {total} requests");
}

fn keys() -> agent_api::tokens::KeyRing {
    agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap()
}

/// Whatever answers at the Redis address as if it were Redis (`:0` to every command) is not
/// taken for "allowed": the instance falls back to its share of the quota.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stranger_answering_for_redis_switches_no_limit_off(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let stranger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = stranger.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = stranger.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0; 4096];
                while let Ok(read) = connection.read(&mut buffer).await {
                    if read == 0 || connection.write_all(b":0\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let app = limited_instance(pool, Some(format!("redis://127.0.0.1:{port}")), 2).await;
    assert_eq!(
        allowed(&[&app], partner, &path, 20).await,
        5,
        "this instance's share: a burst of 10 ÷ 2 instances"
    );
}

/// Bytes to Redis dropped while the connection stays open (a firewall, a stalled link): the
/// instance falls back, and once Redis is reachable again it shares the limit again within
/// seconds, never holding a connection whose answers are out of step with its questions.
#[sqlx::test(migrator = "MIGRATOR")]
async fn after_its_bytes_were_dropped_redis_is_shared_again_promptly(pool: PgPool) {
    let (partner, path) = listed(&pool).await;
    let redis = Redis::start();
    let proxy =
        support::proxy::Proxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let app = limited_instance(pool.clone(), Some(url), 2).await;
    let token = format!("Bearer {}", app.token_for(partner));
    assert_eq!(app.request(&path, Some(&token)).await.status(), 200);
    assert_eq!(json(app.get("/readyz").await).await["rate_limit"], "shared");
    proxy.swallow();
    for _ in 0..3 {
        app.request(&path, Some(&token)).await;
    }
    assert_eq!(
        json(app.get("/readyz").await).await["rate_limit"],
        "fallback"
    );
    proxy.pass();
    let healed = Instant::now();
    eventually("the limit is shared again", || async {
        json(app.get("/readyz").await).await["rate_limit"] == "shared"
    })
    .await;
    assert!(
        healed.elapsed() < Duration::from_secs(5),
        "{:?}",
        healed.elapsed()
    );
    // And it counts: a fresh partner's burst of 10 is let through once, shared.
    let (fresh, fresh_path) = listed(&pool).await;
    assert_eq!(allowed(&[&app], fresh, &fresh_path, 15).await, 10);
}
