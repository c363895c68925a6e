//! The data tier as operators run it (issue: the data tier): PgBouncer in transaction mode,
//! TLS to Postgres and to Redis (with an ACL user), secrets mounted as files, and failover
//! under Patroni. Every part is a real one the test starts on free ports itself.

mod support;

use std::time::Duration;

use sqlx::PgPool;
use support::cluster::Cluster;
use support::pki::TestCa;
use support::process::{agent_api, finished, run_ok, spawn_serve};
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
/// a named statement there collides, `prepared statement "sqlx_s_1" already exists`), with
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
    let token = format!("Bearer {}", app.token_for(partner));
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
    sqlx::query("update users set tokens_valid_after = now() + interval '1 second' where id = $1")
        .bind(partner)
        .execute(&pool)
        .await
        .unwrap();
    eventually("the revoked token is refused", || async {
        app.request("/agent-api/tenant", Some(&token))
            .await
            .status()
            == 401
    })
    .await;
    through_bouncer.close().await;
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
