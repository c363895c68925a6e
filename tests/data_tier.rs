//! The data tier as operators run it (issue: the data tier): PgBouncer in transaction mode,
//! TLS to Postgres and to Redis (with an ACL user), secrets mounted as files, and failover
//! under Patroni. Every part is a real one the test starts on free ports itself.

mod support;

use std::time::Duration;

use sqlx::{Connection, PgPool};
use support::cluster::Cluster;
use support::pki::TestCa;
use support::process::{agent_api, finished, output_of, run_ok, spawn_serve};
use support::*;

/// A directory of the test's own, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("agent-api-data-tier-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Behind PgBouncer in transaction mode (server sessions shared between clients' transactions:
/// a named statement there collides, `prepared statement "sqlx_s_1" already exists`; `migrate`
/// and a `serve` not told, refused there, say what to do), with
/// APP__DATABASE__POOL_MODE=transaction and the feed on a direct session, every route answers
/// right under concurrent load, and a revocation holds.
#[sqlx::test(migrator = "MIGRATOR")]
async fn behind_pgbouncer_in_transaction_mode_every_route_answers(pool: PgPool) {
    use agent_api::config::PoolMode;
    let tenant = default_tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    for n in 0..30 {
        line(tenant, partner).nth(n).insert(&pool).await;
    }
    let direct = database_url(&pool);
    let options = pool.connect_options();
    let bouncer = support::pgbouncer::PgBouncer::start(options.get_host(), options.get_port());
    // What the pooler refuses (session settings sent at connection) is said in one line.
    for command in ["migrate", "serve"] {
        let output = output_of(
            support::process::agent_api(Some(&bouncer.url(&direct)))
                .arg(command)
                .env("APP__DATABASE__STARTUP_WAIT_SECONDS", "5"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("transaction pooler")
                && stderr.contains("APP__DATABASE__POOL_MODE=transaction"),
            "{command}: {stderr}"
        );
    }
    let mut settings = test_settings();
    settings.database.pool_mode = PoolMode::Transaction;
    let through_bouncer =
        agent_api::store::pool(&bouncer.url(&direct), &settings.database).unwrap();
    let app = std::sync::Arc::new(
        TestApp::configured(through_bouncer.clone(), |s| {
            s.database.pool_mode = PoolMode::Transaction;
            s.database.feed_url = Some(direct.clone().into());
            s.legacy.callerline = agent_api::config::LegacyMode::On;
            // Every page read from the database, through PgBouncer.
            s.listing_cache.enabled = false;
        })
        .await,
    );
    app.await_listing_cache("disabled").await;
    let token = format!("Bearer {}", app.old_token(partner));
    let requests = (0..200).map(|n| {
        let (app, token) = (app.clone(), token.clone());
        let path = match n % 3 {
            0 => format!(
                "/agent-api/tenant/{tenant}/callerline?per_page={}",
                1 + n % 30
            ),
            1 => format!("/agent-api/callerline?page={}&per_page=7", 1 + n % 5),
            _ => "/agent-api/tenant".to_string(),
        };
        tokio::spawn(async move {
            let body = json(app.request(&path, Some(&token)).await).await;
            (path, body)
        })
    });
    for request in requests {
        let (path, body) = request.await.unwrap();
        assert_eq!(body["code"], 200, "{path}: {body}");
        if path.contains("callerline") {
            assert_eq!(body["meta"]["total"], 30, "{path}: {body}");
        }
    }
    app.revoke_old_tokens(&pool, partner, "/agent-api/tenant", &token)
        .await;
    through_bouncer.close().await;
}

/// Behind a transaction pooler every statement a partner waits for is one message, its values
/// written into it (one round trip instead of four: begin, parse, execute, commit): every page,
/// filter, refusal, missing tenant, the legacy route and the tenant list answer exactly what a
/// session of its own answers, dates, users and totals included, and the message carries the
/// service's statement timeout.
#[sqlx::test(migrator = "MIGRATOR")]
async fn behind_pgbouncer_a_miss_in_one_message_answers_what_a_session_of_its_own_does(
    pool: PgPool,
) {
    use agent_api::config::PoolMode;
    const STATEMENT_TIMEOUT_MS: u64 = 300;
    let (node, empty_node) = (tenant(&pool, "云节点").await, tenant(&pool, "空节点").await);
    let partner = partner(&pool).await;
    let customer = user(&pool, partner, "customer", "客户").await;
    for n in 0..12 {
        let new = line(node, partner).nth(n);
        let new = match n % 4 {
            0 => new.user(customer),
            1 => new.began(beijing("2024-03-01 08:30:00"), 86_400 * 30),
            2 => new
                .deadline(beijing("2031-12-31 23:59:59"))
                .no_call_number(),
            _ => new,
        };
        new.insert(&pool).await;
    }
    line(node, partner).nth(20).deleted().insert(&pool).await;
    let default_node = default_tenant(&pool, "默认节点").await;
    line(default_node, partner)
        .user(customer)
        .insert(&pool)
        .await;
    let direct = database_url(&pool);
    let options = pool.connect_options();
    let bouncer = support::pgbouncer::PgBouncer::start(options.get_host(), options.get_port());
    let uncached = |s: &mut agent_api::config::Settings| {
        s.listing_cache.enabled = false;
        s.legacy.callerline = agent_api::config::LegacyMode::On;
    };
    let own_session = TestApp::configured(pool.clone(), uncached).await;
    let mut settings = test_settings();
    settings.database.pool_mode = PoolMode::Transaction;
    let through_bouncer =
        agent_api::store::pool(&bouncer.url(&direct), &settings.database).unwrap();
    let pooled = TestApp::configured(through_bouncer.clone(), |s| {
        uncached(s);
        s.database.pool_mode = PoolMode::Transaction;
        s.database.feed_url = Some(direct.clone().into());
        s.database.statement_timeout_ms = STATEMENT_TIMEOUT_MS;
    })
    .await;
    let token = format!("Bearer {}", own_session.old_token(partner));
    let list = format!("/agent-api/tenant/{node}/callerline");
    let paths = [
        list.clone(),
        format!("{list}?page=2&per_page=5"),
        format!("{list}?page=3&per_page=5"),
        format!("{list}?page=9&per_page=5"),
        format!("{list}?unused=true"),
        format!("{list}?unused=false&per_page=2"),
        format!("{list}?user_id={customer}"),
        format!("{list}?user_id={}", uuid::Uuid::new_v4()),
        format!("/agent-api/tenant/{empty_node}/callerline"),
        format!("/agent-api/tenant/{}/callerline", uuid::Uuid::new_v4()),
        "/agent-api/callerline?per_page=3".into(),
        "/agent-api/tenant".into(),
        "/agent-api/tenant?page=2&per_page=1".into(),
    ];
    let answers = async |token: &str| {
        let mut answers = Vec::new();
        for path in &paths {
            for app in [&own_session, &pooled] {
                let response = app.request(path, Some(token)).await;
                let status = response.status();
                answers.push((path.clone(), status, response.text().await.unwrap()));
            }
        }
        answers
    };
    let seen = answers(&token).await;
    for pair in seen.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "a session of its own, then through PgBouncer"
        );
    }
    assert!(seen[0].2.contains("客户") && seen[0].2.contains("2031-12-31 23:59:59"));
    sqlx::query("update users set tokens_valid_after = now() where id = $1")
        .bind(partner)
        .execute(&pool)
        .await
        .unwrap();
    for pair in answers(&token).await.chunks(2) {
        assert_eq!(pair[0], pair[1]);
        assert_eq!(pair[1].1, 401, "{pair:?}");
    }
    // The statement timeout travels in the message (PgBouncer forwards no session settings):
    // a statement kept waiting on a lock past it is cancelled, and the partner gets 503.
    // A token issued after the revocation (`iat` is in whole seconds).
    let issued = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let fresh = format!("Bearer {}", own_session.token_issued(partner, issued));
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("lock table caller_lines in access exclusive mode")
        .execute(&mut *locker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = pooled.request(&list, Some(&fresh)).await;
    assert_eq!(answer.status(), 503);
    let waited = started.elapsed();
    // Given up on this side only after the timeout and a second: the server's came first.
    assert!(
        waited < Duration::from_millis(STATEMENT_TIMEOUT_MS + 700),
        "answered after {waited:?}"
    );
    locker.rollback().await.unwrap();
    through_bouncer.close().await;
}

/// A miss is one message to the primary and nothing after it. sqlx's pool sent every
/// connection it took back a round trip of its own (a `Sync`), so each miss cost the primary
/// two messages and the service a send, a receive and a task more; a connection now goes back
/// to its lane as it is (pinged only after a second idle).
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_miss_sends_the_primary_one_message_and_nothing_after_it(pool: PgPool) {
    let node = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(node, partner).insert(&pool).await;
    let (proxy, through) = support::proxy::before_database(&pool).await;
    let through_proxy = agent_api::store::pool(&through, &test_settings().database).unwrap();
    let direct = database_url(&pool);
    let app = TestApp::configured(through_proxy, |s| {
        s.listing_cache.enabled = false;
        s.database.feed_url = Some(direct.into());
    })
    .await;
    let path = format!("/agent-api/tenant/{node}/callerline");
    // The first miss reads the partner's standing and prepares the statement.
    assert_eq!(app.get_as(partner, &path).await.status(), 200);
    const MISSES: u64 = 40;
    let before = proxy.chunks_sent();
    for _ in 0..MISSES {
        assert_eq!(app.get_as(partner, &path).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = proxy.chunks_sent() - before;
    // The health probe and the schema check pass the proxy too, once a second each.
    assert!(
        (MISSES..MISSES + 6).contains(&sent),
        "{sent} chunks sent to the primary for {MISSES} misses"
    );
}

/// However many HTTP workers ask at once, an instance holds at most `max_connections` of the
/// primary's connections for statements (and two for its probes), and a worker whose own lane
/// holds none takes another's idle one: with two connections and four workers, every one of
/// 64 partners' misses at once is answered.
#[sqlx::test(migrator = "MIGRATOR")]
async fn four_workers_share_max_connections_and_none_is_starved(pool: PgPool) {
    const MAX_CONNECTIONS: u32 = 2;
    let node = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    for n in 0..40 {
        line(node, partner).nth(n).insert(&pool).await;
    }
    let app = TestApp::configured(pool.clone(), |s| {
        s.listing_cache.enabled = false;
        s.server.workers = 4;
        s.database.max_connections = MAX_CONNECTIONS;
    })
    .await;
    let reader = roles::reader(&pool).await.name;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            let mut stopped = stopped;
            while stopped.try_recv().is_err() {
                // Not the feed's two ("agent-api change feed", "agent-api heartbeat").
                let open: i64 = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity where datname = current_database() \
                     and usename = $1 and application_name not like 'agent-api %'",
                )
                .bind(&reader)
                .fetch_one(&pool)
                .await
                .unwrap();
                peak = peak.max(open);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let misses = (1..=64).map(|n| {
        let path = format!("/agent-api/tenant/{node}/callerline?per_page=1&page={n}");
        let app = &app;
        async move { app.get_as(partner, &path).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(misses).await;
    stop.send(()).unwrap();
    let peak = watcher.await.unwrap();
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert!(
        (1..=i64::from(MAX_CONNECTIONS) + 2).contains(&peak),
        "{peak} connections open at once"
    );
}

/// A PgBouncer in transaction mode that ignores `options` (a common setting, for other clients)
/// accepts `serve` left in session mode: it used to start, say it was ready, and answer 500s
/// (`prepared statement "sqlx_s_1" already exists`) without its statement timeout. Now it finds
/// its session settings not in force and refuses at start, exit 2, in one line saying what to
/// set.
#[sqlx::test(migrator = "MIGRATOR")]
async fn serve_in_session_mode_behind_a_pooler_that_ignores_its_settings_refuses_to_start(
    pool: PgPool,
) {
    let options = pool.connect_options();
    let bouncer = support::pgbouncer::PgBouncer::start_with(
        options.get_host(),
        options.get_port(),
        &[(
            "ignore_startup_parameters",
            "extra_float_digits,options".into(),
        )],
    );
    let through_bouncer = bouncer.url(&roles::reader_url(&pool).await);
    let output = output_of(
        agent_api(Some(&through_bouncer))
            .env("APP__SERVER__HOST", "127.0.0.1")
            .env("APP__SERVER__PORT", "0")
            .env("APP__OPS__PORT", "0")
            .arg("serve"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not in force") && stderr.contains("APP__DATABASE__POOL_MODE=transaction"),
        "{stderr}"
    );
}

/// `sslmode=verify-full` with the cluster's CA connects (the pool, and the change feed on the
/// same URL); a wrong CA, or a name the certificate does not carry, is refused at start in one
/// line naming the host and the reason, exit 2, within seconds.
#[tokio::test]
async fn tls_to_postgres_is_verified_and_a_wrong_ca_or_name_is_one_line() {
    let ca = TestCa::new();
    let (cert, key) = ca.server(&["localhost"]);
    let mut cluster = Cluster::create();
    cluster.serve_tls(&cert, &key);
    cluster.start();
    let files = Scratch::new();
    let right_ca = files.file("ca.pem", &ca.cert_pem());
    let wrong_ca = files.file("other-ca.pem", &TestCa::new().cert_pem());
    let url = |host: &str, ca: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
            cluster.port()
        )
    };
    run_ok(agent_api(Some(&url("localhost", &right_ca))).arg("migrate"));
    let serving = spawn_serve(&url("localhost", &right_ca), &[]);
    eventually("the instance is ready, its feed heard over TLS", || async {
        let ready = json(reqwest::get(serving.url("/readyz")).await.unwrap()).await;
        ready["status"] == "ready" && ready["listing_cache"] == "live"
    })
    .await;
    for (url, reason) in [
        (url("localhost", &wrong_ca), "invalid peer certificate"),
        (url("127.0.0.1", &right_ca), "not valid for name"),
    ] {
        let started = std::time::Instant::now();
        let (status, _, stderr) = finished(
            agent_api(Some(&url)).arg("migrate"),
            Duration::from_secs(20),
        );
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!(":{}", cluster.port())),
            "names the host: {stderr}"
        );
        assert!(stderr.contains(reason), "says why ({reason}): {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}

/// Secrets mounted as files, as container platforms do: the database URL and the signing
/// secret read from `<VARIABLE>_FILE`, and neither ever in the log.
#[sqlx::test(migrator = "MIGRATOR")]
async fn secrets_mounted_as_files_are_read_and_never_logged(pool: PgPool) {
    let files = Scratch::new();
    let secret = "a-secret-mounted-as-a-file-0123456789abcdef";
    let url_file = files.file("database-url", &format!("{}\n", database_url(&pool)));
    let secret_file = files.file("jwt-secret", &format!("{secret}\n"));
    let mut serving = support::process::Running(
        agent_api(None)
            .env_remove("APP__AUTH__JWT_SECRET")
            .env("DATABASE_URL_FILE", &url_file)
            .env("APP__AUTH__JWT_SECRET_FILE", &secret_file)
            .env("APP__SERVER__HOST", "127.0.0.1")
            .env("APP__SERVER__PORT", "0")
            .env("APP__OPS__PORT", "0")
            .env("APP__LOG__LEVEL", "debug")
            .arg("serve")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = std::io::BufReader::new(serving.0.stdout.take().unwrap());
    let mut log = String::new();
    for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
        log.push_str(&line);
        if line.contains("agent-api serving") {
            break;
        }
    }
    assert!(log.contains("agent-api serving"), "{log}");
    assert!(!log.contains(secret), "the secret is in the log");
    assert!(
        !log.contains(&database_name(&pool)) || !log.contains("postgres://"),
        "{log}"
    );
}

/// The shared rate limit over TLS (`rediss://`, the server's certificate checked against
/// `APP__RATE_LIMIT__REDIS_CA_PATH`) as an ACL user with a password; a wrong password is Redis
/// not answering (the instance limits on its own, says so), never a limit switched off.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_rate_limit_is_shared_over_tls_as_an_acl_user(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    let ca = TestCa::new();
    let (cert, key) = ca.server(&["localhost"]);
    let files = Scratch::new();
    let ca_path = files.file("ca.pem", &ca.cert_pem());
    let redis = support::redis::Redis::start_tls(
        &files.file("redis.crt", &cert),
        &files.file("redis.key", &key),
        &ca_path,
        ("agent", "s3cret-password"),
    );
    let instance = |password: &str| {
        let url = format!("rediss://agent:{password}@localhost:{}", redis.port);
        let ca_path = std::path::PathBuf::from(&ca_path);
        let pool = pool.clone();
        async move {
            TestApp::configured(pool, move |s| {
                s.rate_limit.enabled = true;
                s.rate_limit.per_second = 1;
                s.rate_limit.burst = 10;
                s.rate_limit.redis_url = Some(url.into());
                s.rate_limit.redis_ca_path = Some(ca_path);
                s.rate_limit.redis_timeout_ms = 500;
                s.rate_limit.instances = Some(2);
            })
            .await
        }
    };
    let app = instance("s3cret-password").await;
    let token = format!("Bearer {}", app.token_for(partner));
    let allowed = |app: &TestApp| {
        let (token, path) = (token.clone(), path.clone());
        let app = app.address.clone();
        async move {
            let client = reqwest::Client::new();
            let mut allowed = 0;
            for _ in 0..15 {
                let status = client
                    .get(format!("{app}{path}"))
                    .header("Authorization", &token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                allowed += usize::from(status == 200);
            }
            allowed
        }
    };
    assert_eq!(allowed(&app).await, 10, "the whole burst, shared in Redis");
    assert_eq!(json(app.get("/readyz").await).await["rate_limit"], "shared");
    let wrong = instance("not-the-password").await;
    wrong.request(&path, Some(&token)).await;
    assert_eq!(
        json(wrong.get("/readyz").await).await["rate_limit"],
        "fallback"
    );
}

/// One partner's line on a tenant, migrated through Patroni's primary.
struct Failover {
    patroni: support::patroni::Patroni,
    pool: PgPool,
    app: std::sync::Arc<TestApp>,
    tenant: uuid::Uuid,
    partner: uuid::Uuid,
}

impl Failover {
    async fn start() -> Self {
        let patroni = tokio::task::block_in_place(support::patroni::Patroni::start);
        let mut settings = test_settings();
        settings.database.acquire_timeout_ms = 500;
        let pool = agent_api::store::pool(&patroni.primary_url(), &settings.database).unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        let tenant = tenant(&pool, "云节点").await;
        let partner = partner(&pool).await;
        line(tenant, partner).insert(&pool).await;
        let standbys = vec![patroni.node_url(0).into(), patroni.node_url(1).into()];
        let app = TestApp::configured(pool.clone(), |s| {
            s.database.acquire_timeout_ms = 500;
            s.database.statement_timeout_ms = 2_000;
            s.database.replica_urls = standbys;
            s.database.replica_retry_ms = 200;
        })
        .await;
        app.await_listing_cache("live").await;
        Self {
            patroni,
            pool,
            app: std::sync::Arc::new(app),
            tenant,
            partner,
        }
    }

    /// When the primary behind HAProxy started, asked on a connection of its own (the pool's
    /// may outlive a killed postmaster for a while); `None` while none answers.
    async fn primary_started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let mut connection = sqlx::PgConnection::connect(&self.patroni.primary_url())
            .await
            .ok()?;
        sqlx::query_scalar("select pg_postmaster_start_time()")
            .fetch_one(&mut connection)
            .await
            .ok()
    }

    /// Runs Patroni's controls, which block (processes, curl, sleeps), off the runtime's
    /// worker: the app's feed and the partner polling it keep running meanwhile.
    fn drive<R>(&mut self, act: impl FnOnce(&mut support::patroni::Patroni) -> R) -> R {
        tokio::task::block_in_place(|| act(&mut self.patroni))
    }
}

/// What a partner polling through a failover saw: when, HTTP status, envelope code, whether
/// `Retry-After` came with it, and the line's name on a 200.
#[derive(Debug, Clone)]
struct Seen {
    at: std::time::Instant,
    /// How long the answer took.
    took: Duration,
    status: u16,
    code: i64,
    retry_after: bool,
    name: String,
}

/// Polls like a partner's integration, every 20 ms, alternating a page it asked before (kept
/// in memory while trusted) and a new page (a cache miss): until `stop` is set.
fn poll(
    failover: &Failover,
    token: String,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<Vec<Seen>>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (app, path, stopped) = (
        failover.app.clone(),
        format!("/agent-api/tenant/{}/callerline", failover.tenant),
        stop.clone(),
    );
    let polling = tokio::spawn(async move {
        let mut seen = Vec::new();
        for n in 0_u32.. {
            if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let page = match n % 2 {
                0 => path.clone(),
                _ => format!("{path}?per_page={}", 2 + n % 90),
            };
            let asked = std::time::Instant::now();
            let response = app.request(&page, Some(&token)).await;
            let (status, retry_after) = (
                response.status().as_u16(),
                response.headers().contains_key("retry-after"),
            );
            let body = json(response).await;
            seen.push(Seen {
                at: std::time::Instant::now(),
                took: asked.elapsed(),
                status,
                code: body["code"].as_i64().unwrap_or_default(),
                retry_after,
                name: body["data"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });
    (stop, polling)
}

/// Partners saw only 200s, or the 503 envelope with `Retry-After` (never a 500), and the 503s
/// no later than the failover's `took` plus 2 s after `event`; says how long they lasted and
/// when the first 200 came after the event.
fn assert_transition(seen: &[Seen], event: std::time::Instant, took: Duration, what: &str) {
    for answer in seen {
        assert!(
            answer.status == 200
                || (answer.status == 503 && answer.code == 503 && answer.retry_after),
            "{what}: {answer:?}"
        );
    }
    let unavailable: Vec<&Seen> = seen.iter().filter(|a| a.status == 503).collect();
    let last_503 = unavailable
        .last()
        .map(|a| a.at.saturating_duration_since(event));
    if let Some(last) = last_503 {
        assert!(
            last <= took + Duration::from_secs(2),
            "{what}: 503 until {last:?}, failover took {took:?}"
        );
    }
    let first_200 = seen
        .iter()
        .filter(|a| a.at > event && a.status == 200)
        .find(|a| unavailable.last().is_none_or(|last| a.at > last.at))
        .map(|a| a.at - event);
    let seconds_of_503 = match (unavailable.first(), unavailable.last()) {
        (Some(first), Some(last)) => last.at - first.at,
        _ => Duration::ZERO,
    };
    let slowest = seen.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "{what}: failover {took:?}; {} × 503 over {seconds_of_503:?}; first 200 {first_200:?} after the event; slowest answer {slowest:?}",
        unavailable.len()
    );
}

/// Patroni's REST API as shipped refuses state-changing requests without its credentials (it
/// used to take a `POST /switchover` from anyone who could reach the port); the switchover
/// `patronictl` makes with them is a few seconds of 503, never a 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_planned_switchover_is_a_few_seconds_of_503_and_never_a_500() {
    use support::patroni::REST_USER;
    let mut failover = Failover::start().await;
    let client = reqwest::Client::new();
    let asked = serde_json::json!({"leader": "node1", "candidate": "node2"});
    for credentials in [None, Some((REST_USER, "a-guess"))] {
        let mut request = client
            .post(failover.patroni.rest_url(0, "/switchover"))
            .json(&asked);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 401, "{credentials:?}");
    }
    assert_eq!(failover.patroni.primary(), Some(0), "nothing was switched");
    let token = format!("Bearer {}", failover.app.token_for(failover.partner));
    let (stop, polling) = poll(&failover, token);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event = std::time::Instant::now();
    failover.drive(|patroni| {
        patroni.switchover(1);
        patroni.await_role(1, "primary");
    });
    let took = event.elapsed();
    eventually("partners are served again", || async {
        failover.app.get("/readyz").await.status() == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = polling.await.unwrap();
    assert_transition(&seen, event, took, "switchover");
    assert_eq!(seen.last().unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primarys_postmaster_killed_is_a_few_seconds_of_503_and_never_a_500() {
    let mut failover = Failover::start().await;
    let token = format!("Bearer {}", failover.app.token_for(failover.partner));
    let (stop, polling) = poll(&failover, token);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event = std::time::Instant::now();
    let started_before = failover.primary_started().await;
    failover.drive(|patroni| patroni.kill_postmaster(0));
    // Patroni restarts it, or fails over: either way a primary started anew answers.
    eventually("a primary started anew answers", || async {
        failover
            .primary_started()
            .await
            .is_some_and(|started| Some(started) != started_before)
    })
    .await;
    let took = event.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = polling.await.unwrap();
    assert_transition(&seen, event, took, "postmaster killed");
    assert_eq!(seen.last().unwrap().status, 200);
}

/// Replication cut, then a rename and a revocation committed on the primary alone, then the
/// primary lost: the standby takes over without them. No page showing the lost rename is
/// served after the switch, and the lost revocation is undone (the partner's token answers
/// again: what docs/operations.md tells operators, and why synchronous replication exists); a
/// revocation committed on the new primary holds within the bound; and the old primary,
/// rejoined as a standby, takes reads again once it has replayed.
#[tokio::test(flavor = "multi_thread")]
async fn commits_lost_in_a_failover_are_never_shown_and_the_old_primary_rejoins() {
    let mut failover = Failover::start().await;
    let token = format!("Bearer {}", failover.app.old_token(failover.partner));
    let other = partner(&failover.pool).await;
    line(failover.tenant, other).insert(&failover.pool).await;
    let other_token = format!("Bearer {}", failover.app.old_token(other));
    let (stop, polling) = poll(&failover, token.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    failover.drive(|patroni| patroni.cut_replication(1));
    sqlx::query("update caller_lines set name = '丢失的改名' where partner_id = $1")
        .bind(failover.partner)
        .execute(&failover.pool)
        .await
        .unwrap();
    let path = format!("/agent-api/tenant/{}/callerline", failover.tenant);
    failover
        .app
        .revoke_old_tokens(&failover.pool, other, &path, &other_token)
        .await;
    eventually("the rename is served, from the old primary", || async {
        json(failover.app.request(&path, Some(&token)).await).await["data"][0]["name"]
            == "丢失的改名"
    })
    .await;
    let event = std::time::Instant::now();
    failover.drive(|patroni| {
        patroni.kill_node(0);
        patroni.thaw_replication(1);
        patroni.await_role(1, "primary");
    });
    let took = event.elapsed();
    let switched = std::time::Instant::now();
    eventually("partners are served again", || async {
        failover.app.request(&path, Some(&token)).await.status() == 200
    })
    .await;
    assert_eq!(
        failover
            .app
            .request(&path, Some(&other_token))
            .await
            .status(),
        200,
        "the revocation lost with the old primary is undone"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A revocation on the new primary holds within the bound.
    let revoked = std::time::Instant::now();
    let refused = failover
        .app
        .revoke_old_tokens(&failover.pool, failover.partner, &path, &token)
        .await;
    assert!(
        refused <= Duration::from_secs(3),
        "refused {refused:?} after"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = polling.await.unwrap();
    let shown: Vec<&Seen> = seen
        .iter()
        .filter(|a| a.at > switched && a.name == "丢失的改名")
        .collect();
    assert!(shown.is_empty(), "a lost commit was shown: {shown:?}");
    assert_transition(
        &seen
            .iter()
            .filter(|a| a.at <= revoked)
            .cloned()
            .collect::<Vec<_>>(),
        event,
        took,
        "failover with lost commits",
    );

    // The old primary rejoins as a standby (rewound) and takes reads again.
    let rejoining = std::time::Instant::now();
    failover.drive(|patroni| {
        patroni.start_node(0);
        patroni.await_role(0, "replica");
        patroni.await_streaming(0);
    });
    let fresh = format!("Bearer {}", failover.app.token_for(failover.partner));
    let reads_on_node0 = || async {
        let mut standby = sqlx::PgConnection::connect(&failover.patroni.node_url(0))
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity where application_name = 'agent-api' \
             and backend_type = 'client backend'",
        )
        .fetch_one(&mut standby)
        .await
        .unwrap()
    };
    let mut per_page = 100;
    eventually("the rejoined standby answers reads", || {
        per_page += 1;
        let page = format!("{path}?per_page={per_page}");
        let (app, fresh) = (failover.app.clone(), fresh.clone());
        async move {
            assert_eq!(app.request(&page, Some(&fresh)).await.status(), 200);
            reads_on_node0().await > 0
        }
    })
    .await;
    println!(
        "the old primary took reads again {:?} after it was started",
        rejoining.elapsed()
    );
}
