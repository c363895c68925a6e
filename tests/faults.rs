//! Reliability under faults (issue: database outages, pool exhaustion, slow statements,
//! shutdown with requests in flight, start-up before the database). Outages use a throwaway
//! Postgres cluster that the test starts and stops itself, never the shared server.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_api::store;
use sqlx::{Connection, PgConnection, PgPool};
use support::cluster::{Cluster, run};
use support::ports::free_port;
use support::process::{spawn_serve, terminate, wait_for_exit};
use support::redis::Redis;
use support::*;
use uuid::Uuid;
const ACQUIRE_TIMEOUT_MS: u64 = 500;
/// What a 503 may take beyond the acquire timeout: a connect attempt, scheduling, a slow CI.
const MARGIN: Duration = Duration::from_millis(1500);

fn quick_settings(settings: &mut agent_api::config::Settings) {
    settings.database.acquire_timeout_ms = ACQUIRE_TIMEOUT_MS;
}

/// For the tests that make the database slow with a lock: a lock announces no change, so a page
/// kept in memory would be answered without the database.
fn every_read_from_the_database(settings: &mut agent_api::config::Settings) {
    settings.listing_cache.enabled = false;
}

/// A listed line for a fresh partner; returns (partner, list path).
/// A listed line for a fresh partner; returns (partner, list path).
async fn one_line(pool: &PgPool) -> (Uuid, String) {
    let tenant = tenant(pool, "云节点").await;
    let partner = partner(pool).await;
    line(tenant, partner).insert(pool).await;
    (partner, format!("/agent-api/tenant/{tenant}/callerline"))
}

/// A throwaway cluster, started and migrated, holding one listed line; with its pool, the
/// line's partner and list path.
async fn cluster_with_one_line() -> (Cluster, PgPool, Uuid, String) {
    let cluster = Cluster::create();
    cluster.start();
    let mut settings = test_settings();
    quick_settings(&mut settings);
    let pool = store::pool(&cluster.url(), &settings.database).unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let (partner, path) = one_line(&pool).await;
    (cluster, pool, partner, path)
}

/// What a request answered: HTTP status, envelope code, and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: i64,
    elapsed: Duration,
    retry_after: bool,
}

async fn ask(app: &TestApp, authorization: &str, path: &str) -> Answer {
    let started = Instant::now();
    let response = app.request(path, Some(authorization)).await;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = json(response).await;
    Answer {
        status,
        code: body["code"].as_i64().unwrap(),
        elapsed: started.elapsed(),
        retry_after,
    }
}

fn assert_200_or_prompt_503(answer: &Answer) {
    match (answer.status, answer.code) {
        (200, 200) => {}
        (503, 503) => assert!(answer.retry_after, "503 carries Retry-After: {answer:?}"),
        _ => panic!("only 200 or the 503 envelope: {answer:?}"),
    }
    assert!(
        answer.elapsed < Duration::from_millis(ACQUIRE_TIMEOUT_MS) + MARGIN,
        "answered within the acquire timeout: {answer:?}"
    );
}

#[tokio::test]
async fn a_database_outage_answers_503_promptly_and_recovers_without_a_restart() {
    let (cluster, pool, partner, path) = cluster_with_one_line().await;
    let app = Arc::new(TestApp::configured(pool, quick_settings).await);
    let authorization = format!("Bearer {}", app.token_for(partner));
    assert_eq!(ask(&app, &authorization, &path).await.code, 200);

    // Steady polling, as a partner's integration does, through the whole outage.
    let running = Arc::new(AtomicBool::new(true));
    let poller = {
        let (app, running) = (app.clone(), running.clone());
        let (authorization, path) = (authorization.clone(), path.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while running.load(Ordering::Relaxed) && Instant::now() < deadline {
                answers.push(ask(&app, &authorization, &path).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503, "not ready while the database is down");
    cluster.start();
    let restarted = Instant::now();
    let recovered = loop {
        let answer = ask(&app, &authorization, &path).await;
        if answer.code == 200 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "no recovery: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.store(false, Ordering::Relaxed);
    let answers = poller.await.unwrap();
    answers.iter().for_each(assert_200_or_prompt_503);
    let unavailable = answers.iter().filter(|a| a.status == 503).count();
    assert!(unavailable > 0, "the outage was seen: {answers:?}");
    eventually("ready again within a probe", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    println!(
        "outage: {} answers ({unavailable} × 503), recovered {recovered:?} after restart",
        answers.len()
    );
}

#[tokio::test]
async fn after_a_quiet_restart_the_first_request_is_answered() {
    let (cluster, pool, partner, path) = cluster_with_one_line().await;
    let app = TestApp::configured(pool, |s| {
        quick_settings(s);
        every_read_from_the_database(s);
    })
    .await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    assert_eq!(ask(&app, &authorization, &path).await.code, 200);

    // The pooled connections are cut while nobody asks; they are idle past the ping threshold.
    cluster.stop();
    cluster.start();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = ask(&app, &authorization, &path).await;
    assert_eq!((answer.status, answer.code), (200, 200), "{answer:?}");
}

#[tokio::test]
async fn a_change_feed_gone_silent_is_caught_by_its_heartbeat() {
    let (_cluster, pool, partner, path) = cluster_with_one_line().await;
    let app = TestApp::configured(pool.clone(), |s| s.listing_cache.max_staleness_ms = 500).await;
    app.await_listing_cache("live").await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    let name = || async {
        let body = json(app.request(&path, Some(&authorization)).await).await;
        body["data"][0]["name"].clone()
    };
    assert_eq!(name().await, "线路");

    // The listening backend stops answering without closing its connection, as behind a
    // firewall that dropped the flow; what changes meanwhile is not announced.
    let listener: i32 =
        sqlx::query_scalar("select pid from pg_stat_activity where application_name = $1")
            .bind(store::feed::changes::APPLICATION_NAME)
            .fetch_one(&pool)
            .await
            .unwrap();
    run(Command::new("kill").args(["-STOP", &listener.to_string()]));
    execute_unannounced(&pool, "update caller_lines set name = $1", "改名").await;
    eventually("the renamed line is listed", || async {
        name().await == "改名"
    })
    .await;
    run(Command::new("kill").args(["-CONT", &listener.to_string()]));
    app.await_listing_cache("live").await;
}

/// Waits until `count` sessions of the database wait on a lock, as the statements queued
/// behind `lock_caller_lines` do.
async fn await_lock_waiters(pool: &PgPool, count: i64) {
    eventually(&format!("{count} statements wait on the lock"), || async {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        waiting >= count
    })
    .await;
}

/// Holds an exclusive lock on caller_lines, so every list statement waits behind it.
async fn lock_caller_lines(pool: &PgPool) -> PgConnection {
    let mut locker = PgConnection::connect(&database_url(pool)).await.unwrap();
    sqlx::raw_sql("begin; lock table caller_lines in access exclusive mode")
        .execute(&mut locker)
        .await
        .unwrap();
    locker
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_exhausted_pool_answers_503_after_the_acquire_timeout_then_recovers(pool: PgPool) {
    let (partner, path) = one_line(&pool).await;
    let mut settings = test_settings();
    settings.database.max_connections = 2;
    quick_settings(&mut settings);
    let own_pool = store::pool(&database_url(&pool), &settings.database).unwrap();
    let app = Arc::new(
        TestApp::configured(own_pool.clone(), |s| {
            s.database.max_connections = 2;
            quick_settings(s);
            every_read_from_the_database(s);
        })
        .await,
    );
    let authorization = format!("Bearer {}", app.token_for(partner));
    assert_eq!(ask(&app, &authorization, &path).await.code, 200, "warm");

    let mut locker = lock_caller_lines(&pool).await;
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let (app, authorization, path) = (app.clone(), authorization.clone(), path.clone());
            tokio::spawn(async move { ask(&app, &authorization, &path).await })
        })
        .collect();
    // Longer than the acquire timeout: the four without a connection have been answered.
    tokio::time::sleep(Duration::from_millis(ACQUIRE_TIMEOUT_MS) + MARGIN).await;
    sqlx::raw_sql("commit").execute(&mut locker).await.unwrap();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let unavailable: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(unavailable.len(), 4, "{answers:?}");
    unavailable.iter().for_each(|a| assert_200_or_prompt_503(a));
    assert_eq!(
        answers.iter().filter(|a| a.code == 200).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        ask(&app, &authorization, &path).await.code,
        200,
        "normal traffic resumes"
    );
    own_pool.close().await; // so the test database can be dropped
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_statement_past_its_timeout_is_cancelled_with_503(pool: PgPool) {
    let (partner, path) = one_line(&pool).await;
    let mut settings = test_settings();
    settings.database.statement_timeout_ms = 300;
    let own_pool = store::pool(&database_url(&pool), &settings.database).unwrap();
    let app = TestApp::configured(own_pool.clone(), |s| {
        s.database.statement_timeout_ms = 300;
        every_read_from_the_database(s);
    })
    .await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    let locker = lock_caller_lines(&pool).await;
    let answer = ask(&app, &authorization, &path).await;
    assert_eq!((answer.status, answer.code), (503, 503), "{answer:?}");
    assert!(answer.elapsed < Duration::from_secs(3), "{answer:?}");
    drop(locker);
    assert_eq!(
        ask(&app, &authorization, &path).await.code,
        200,
        "the connection is usable again"
    );
    own_pool.close().await; // so the test database can be dropped
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sigterm_lets_requests_in_flight_finish_then_exits_zero(pool: PgPool) {
    let (partner, path) = one_line(&pool).await;
    let mut serving = spawn_serve(&roles::reader_url(&pool).await, &[]);
    let keys = agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap();
    let token = keys
        .issue(partner, Duration::from_secs(600), None, chrono::Utc::now())
        .unwrap();
    let client = reqwest::Client::new();

    let mut locker = lock_caller_lines(&pool).await;
    // Three pages, so three statements wait (one page's misses would share one read).
    let in_flight: Vec<_> = (1..=3)
        .map(|per_page| {
            let url = serving.url(&format!("{path}?per_page={per_page}"));
            let request = client.get(&url).bearer_auth(&token).send();
            tokio::spawn(async move { request.await.map(|r| r.status().as_u16()) })
        })
        .collect();
    await_lock_waiters(&pool, 3).await;
    terminate(&serving.child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        serving.child.try_wait().unwrap().is_none(),
        "still draining"
    );
    sqlx::raw_sql("commit").execute(&mut locker).await.unwrap();
    for request in in_flight {
        assert_eq!(
            request.await.unwrap().unwrap(),
            200,
            "an in-flight request completed"
        );
    }
    assert_eq!(
        wait_for_exit(&mut serving.child, Duration::from_secs(20)).code(),
        Some(0)
    );
}

#[tokio::test]
async fn serve_waits_for_a_database_that_is_not_up_yet() {
    let cluster = Cluster::create();
    let url = cluster.url();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        cluster.start();
        cluster
    });
    let started = Instant::now();
    let mut serving = spawn_serve(&url, &[("APP__DATABASE__STARTUP_WAIT_SECONDS", "30")]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the database"
    );
    let cluster = starter.join().unwrap();
    // It answers, and says the empty cluster needs migrating.
    let ready = json(reqwest::get(serving.url("/readyz")).await.unwrap()).await;
    assert_eq!(ready["database"], "answers", "{ready}");
    assert_eq!(ready["action"], "run agent-api migrate", "{ready}");
    terminate(&serving.child);
    assert_eq!(
        wait_for_exit(&mut serving.child, Duration::from_secs(20)).code(),
        Some(0)
    );
    drop(cluster);
}

/// Everything an instance waits on in the background, each stuck: Redis frozen (its probe
/// loop), a standby that is gone (its probe), the database down (the feed retrying, the
/// heartbeat, what keeps memory warm).
fn stuck_everywhere(redis: &Redis, settings: &mut agent_api::config::Settings) {
    settings.rate_limit.enabled = true;
    settings.rate_limit.redis_url = Some(redis.url().into());
    settings.database.replica_urls =
        vec![format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()).into()];
}

#[tokio::test]
async fn stopping_an_app_ends_every_background_task_whatever_it_waits_on() {
    let (cluster, setup, partner, path) = cluster_with_one_line().await;
    setup.close().await;
    let redis = Redis::start();
    let mut settings = test_settings();
    stuck_everywhere(&redis, &mut settings);
    // A pool that connects only when asked, left open after the stop: any task that outlived
    // it would connect again. (Closing it would hide such a task, and a pool keeping a minimum
    // retries its connect for five minutes, holding up the close.)
    settings.database.min_connections = 0;
    let pool = store::pool(&cluster.url(), &settings.database).unwrap();
    let app = TestApp::configured(pool, |s| *s = settings).await;
    redis.pause();
    // Redis times out: the rate limit falls back and starts probing it.
    assert_eq!(
        ask(&app, &format!("Bearer {}", app.token_for(partner)), &path)
            .await
            .code,
        200
    );
    cluster.stop();
    eventually("the app sees the database down", || async {
        app.get("/readyz").await.status() == 503
    })
    .await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Everything back: nothing of the stopped app comes back to it (its loops would within a
    // second: the feed, the heartbeat and the probes all retry every second or faster).
    cluster.start();
    redis.resume();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut admin = PgConnection::connect(&cluster.url()).await.unwrap();
    let sessions: Vec<String> = sqlx::query_scalar(
        "select application_name from pg_stat_activity where application_name like 'agent-api%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(sessions, Vec::<String>::new());
    let mut redis_admin = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let clients: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis_admin)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        1,
        "only this test's own: {clients}"
    );
}

#[tokio::test]
async fn sigterm_exits_promptly_with_redis_frozen_the_database_down_and_a_standby_gone() {
    let (cluster, pool, partner, path) = cluster_with_one_line().await;
    let redis = Redis::start();
    let standby = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let mut serving = spawn_serve(
        &roles::reader_url(&pool).await,
        &[
            ("APP__RATE_LIMIT__ENABLED", "true"),
            ("APP__RATE_LIMIT__REDIS_URL", &redis.url()),
            ("APP__RATE_LIMIT__INSTANCES", "1"),
            ("DATABASE_REPLICA_URLS", &standby),
        ],
    );
    redis.pause();
    let keys = agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap();
    let token = keys
        .issue(partner, Duration::from_secs(600), None, chrono::Utc::now())
        .unwrap();
    let answer = reqwest::Client::new()
        .get(serving.url(&path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    pool.close().await;
    cluster.stop();
    let started = Instant::now();
    terminate(&serving.child);
    assert_eq!(
        wait_for_exit(&mut serving.child, Duration::from_secs(10)).code(),
        Some(0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A primary that goes silent without closing (a frozen VM) enforces no statement_timeout of
/// its own: the service gives a statement up at the timeout and a second, and answers 503.
#[tokio::test]
async fn a_frozen_primary_holds_no_request_past_the_statement_deadline() {
    let (cluster, pool, partner, path) = cluster_with_one_line().await;
    let app = TestApp::configured(pool.clone(), |s| {
        quick_settings(s);
        s.database.statement_timeout_ms = 300;
    })
    .await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    assert_eq!(ask(&app, &authorization, &path).await.code, 200);
    cluster.freeze();
    let answer = ask(&app, &authorization, &format!("{path}?per_page=7")).await;
    cluster.thaw();
    assert_eq!((answer.status, answer.code), (503, 503), "{answer:?}");
    assert!(
        answer.elapsed < Duration::from_millis(300) + MARGIN,
        "{answer:?}"
    );
}

/// Sessions the server ended (an operator's `pg_terminate_backend`, a restart, a pooler's) are
/// found out only by the next statement sent on them: the read is sent again on another
/// connection, and partners never see them go. (Found by the chaos check: 503s while sessions
/// were terminated.)
#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_the_server_ended_cost_partners_nothing(pool: PgPool) {
    let (partner, path) = one_line(&pool).await;
    let reader = roles::reader(&pool).await;
    let serving = spawn_serve(
        &roles::url_as(&pool, &reader),
        &[("APP__LISTING_CACHE__ENABLED", "false")],
    );
    let keys = agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap();
    let token = keys
        .issue(partner, Duration::from_secs(600), None, chrono::Utc::now())
        .unwrap();
    let client = reqwest::Client::new();
    for round in 0..5 {
        let answer = client
            .get(serving.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "round {round}");
        let ended: i64 = sqlx::query_scalar(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = $1",
        )
        .bind(&reader.name)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(ended > 0);
    }
}
