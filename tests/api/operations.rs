//! What operators rely on: the binary's subcommands, migrations, demo data, health checks,
//! request ids, configuration errors and shutdown (SPEC §1, §5).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_api::startup::Application;
use agent_api::store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
const BINARY: &str = env!("CARGO_BIN_EXE_agent-api");

/// The binary with a clean environment: only what the test passes, plus PATH.
fn agent_api(database_url: Option<&str>) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP__AUTH__JWT_SECRET", SECRET)
        .env("APP__LOG__LEVEL", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[sqlx::test(migrations = false)]
async fn migrate_builds_the_schema_on_an_empty_database_and_reruns_harmlessly(pool: PgPool) {
    let url = database_url(&pool);
    run_ok(agent_api(Some(&url)).arg("migrate"));
    run_ok(agent_api(Some(&url)).arg("migrate"));
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
    for table in ["tenants", "users", "caller_lines", "caller_line_service"] {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(exists, "{table} exists after migrate");
    }
}

#[sqlx::test(migrations = false)]
async fn seed_demo_twice_leaves_the_same_rows(pool: PgPool) {
    let url = database_url(&pool);
    run_ok(agent_api(Some(&url)).arg("migrate"));
    let snapshot = || async {
        sqlx::query_scalar::<_, String>(
            "select concat_ws('|', \
               (select string_agg(t::text, ';' order by id) from tenants t), \
               (select string_agg(u::text, ';' order by id) from users u), \
               (select string_agg(l::text, ';' order by id) from caller_lines l))",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    run_ok(agent_api(Some(&url)).arg("seed-demo"));
    let first = snapshot().await;
    run_ok(agent_api(Some(&url)).arg("seed-demo"));
    assert_eq!(snapshot().await, first);
    let counts: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from tenants where is_default), \
                (select count(*) from users), (select count(*) from caller_lines)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (1, 2, 5));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn seed_demo_restores_edited_demo_rows(pool: PgPool) {
    store::demo::seed(&pool).await.unwrap();
    sqlx::query("update caller_lines set deleted_at = now(), name = 'x'")
        .execute(&pool)
        .await
        .unwrap();
    store::demo::seed(&pool).await.unwrap();
    let listed: i64 = sqlx::query_scalar(
        "select count(*) from caller_lines where deleted_at is null and name <> 'x'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(listed, 5);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_service_view_ends_service_at_the_earlier_bound(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let start = beijing("2024-01-01 00:00:00");
    let by_time = line(tenant, partner)
        .began(start, 3600)
        .deadline(start + chrono::TimeDelta::days(1))
        .insert(&pool)
        .await;
    let by_deadline = line(tenant, partner)
        .began(start, 86_400 * 9)
        .deadline(start + chrono::TimeDelta::days(1))
        .insert(&pool)
        .await;
    let unbounded = line(tenant, partner).insert(&pool).await;
    let not_begun = line(tenant, partner).deadline(start).insert(&pool).await;
    let ends = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "select service_ends_at from caller_line_service where id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        ends(by_time).await,
        Some(start + chrono::TimeDelta::hours(1))
    );
    assert_eq!(
        ends(by_deadline).await,
        Some(start + chrono::TimeDelta::days(1))
    );
    assert_eq!(ends(unbounded).await, None);
    assert_eq!(ends(not_begun).await, Some(start));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_schema_refuses_what_the_spec_forbids(pool: PgPool) {
    let partner = partner(&pool).await;
    let tenant = default_tenant(&pool, "默认").await;
    let refused = [
        "insert into tenants (id, name, is_default) values (gen_random_uuid(), 'second default', true)".to_string(),
        "insert into users (id, type, name) values (gen_random_uuid(), 'admin', 'x')".to_string(),
        "insert into users (id, type, name) values (gen_random_uuid(), 'customer', 'orphan')".to_string(),
        format!("insert into users (id, type, partner_id, name) values (gen_random_uuid(), 'partner', '{partner}', 'x')"),
        format!("insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) values (gen_random_uuid(), '{tenant}', '{partner}', 'x', 'x', -1)"),
        format!("insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line, available_time) values (gen_random_uuid(), '{tenant}', '{partner}', 'x', 'x', 1, -1)"),
        format!("insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) values (gen_random_uuid(), '{}', '{partner}', 'x', 'x', 1)", Uuid::new_v4()),
    ];
    for statement in refused {
        let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&pool)
            .await;
        assert!(outcome.is_err(), "should be refused: {statement}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn updated_at_follows_plain_sql_updates(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let id = line(tenant, partner).insert(&pool).await;
    sqlx::query("update caller_lines set name = 'renamed' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let moved: bool =
        sqlx::query_scalar("select updated_at > created_at from caller_lines where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(moved);
}

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
        Application::build(&settings, listener, pool, agent_api::http::system_clock()).unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let started = Instant::now();
    let response = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answers within the acquire timeout"
    );
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(assert_error(response, 503, 503).await, "服务暂不可用");
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

#[test]
fn a_bad_setting_refuses_to_start_with_one_line_naming_it() {
    let cases = [
        ("APP__SERVER__PORT", "eighty", "server.port"),
        ("APP__LEGACY__CALLERLINE", "sometimes", "legacy.callerline"),
        (
            "APP__AUTH__JWT_SECRET",
            "too-short",
            "APP__AUTH__JWT_SECRET",
        ),
        (
            "APP__API__DISPLAY_TIMEZONE",
            "Moon/Base",
            "display_timezone",
        ),
    ];
    for (name, value, named) in cases {
        let output = agent_api(Some("postgres://127.0.0.1:1/x"))
            .env(name, value)
            .arg("serve")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "{name}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = agent_api(None).arg("migrate").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
}

#[test]
fn token_issue_prints_only_a_token_that_verifies() {
    let partner = Uuid::new_v4();
    let stdout = run_ok(agent_api(None).args([
        "token",
        "issue",
        "--partner",
        &partner.to_string(),
        "--ttl",
        "2h",
    ]));
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let keys = agent_api::auth::KeyRing::from_settings(&test_settings().auth).unwrap();
    let verified = keys.verify(token, chrono::Utc::now()).unwrap();
    assert_eq!(verified.partner_id, partner);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sigterm_drains_and_exits_zero(pool: PgPool) {
    let url = database_url(&pool);
    let mut child = agent_api(Some(&url))
        .env("APP__SERVER__HOST", "127.0.0.1")
        .env("APP__SERVER__PORT", "0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait on the start-up log line for the port, not on a sleep.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("serve logs until it listens").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("logs are JSON lines");
        if event["fields"]["message"] == "agent-api serving" {
            break event["fields"]["port"].as_u64().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn token_issue_signs_with_a_configured_private_key_and_inspect_explains(pool: PgPool) {
    let partner = partner(&pool).await;
    let keys = format!("{}/tests/fixtures/keys", env!("CARGO_MANIFEST_DIR"));
    let config = std::env::temp_dir().join(format!("agent-api-{}.toml", Uuid::new_v4()));
    std::fs::write(
        &config,
        format!(
            "[auth]\nsigning_kid = \"ed\"\n[[auth.keys]]\nkid = \"ed\"\nalgorithm = \"EdDSA\"\n\
             public_key = \"{keys}/ed25519.pub.pem\"\nprivate_key = \"{keys}/ed25519.pem\"\n"
        ),
    )
    .unwrap();
    let url = database_url(&pool);
    let with_config = |command: &mut Command| {
        command.arg("--config").arg(&config);
    };
    let mut issue = agent_api(None);
    with_config(&mut issue);
    let token = run_ok(issue.args(["token", "issue", "--partner", &partner.to_string()]));
    let header = jsonwebtoken::decode_header(token.trim()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some("ed"));

    let mut inspect = agent_api(Some(&url));
    with_config(&mut inspect);
    let report = run_ok(inspect.args(["token", "inspect", token.trim()]));
    assert!(
        report.contains(&partner.to_string()) && report.contains("accepted"),
        "{report}"
    );

    sqlx::query("update users set tokens_valid_after = now() + interval '1 second' where id = $1")
        .bind(partner)
        .execute(&pool)
        .await
        .unwrap();
    let mut revoked = agent_api(Some(&url));
    with_config(&mut revoked);
    let output = revoked
        .args(["token", "inspect", token.trim()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("revoked"));

    let mut garbage = agent_api(None);
    with_config(&mut garbage);
    let output = garbage
        .args(["token", "inspect", "nonsense"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("rejected"));
    std::fs::remove_file(config).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn line_counts_follow_every_kind_of_change(pool: PgPool) {
    let tenant_a = tenant(&pool, "甲").await;
    let tenant_b = super::helpers::tenant(&pool, "乙").await;
    let partner = partner(&pool).await;
    let other = super::helpers::partner(&pool).await;
    let customer = user(&pool, partner, "customer", "客户").await;
    let first = line(tenant_a, partner).insert(&pool).await;
    let second = line(tenant_a, partner).user(customer).insert(&pool).await;
    line(tenant_b, other).insert(&pool).await;
    let changes = [
        format!("update caller_lines set user_id = '{customer}' where id = '{first}'"),
        format!("update caller_lines set user_id = null where id = '{second}'"),
        format!("update caller_lines set deleted_at = now() where id = '{first}'"),
        format!("update caller_lines set deleted_at = null where id = '{first}'"),
        format!("select split_caller_line('{first}', 1)"),
        format!("update caller_lines set tenant_id = '{tenant_b}' where id = '{second}'"),
        format!("update caller_lines set partner_id = '{other}' where id = '{second}'"),
        format!("update caller_lines set parent_id = '{first}' where id = '{second}'"),
        format!("update caller_lines set name = 'renamed' where id = '{first}'"),
        format!("delete from caller_lines where parent_id = '{first}'"),
        format!("delete from caller_lines where id = '{second}'"),
        "truncate caller_lines cascade".to_string(),
    ];
    let mismatch = "select count(*) from ( \
            (select partner_id, tenant_id, listed, unallocated from caller_line_counts \
             where listed > 0 \
             except \
             select partner_id, tenant_id, count(*), count(*) filter (where user_id is null) \
             from caller_lines where parent_id is null and deleted_at is null group by 1, 2) \
            union all \
            (select partner_id, tenant_id, count(*), count(*) filter (where user_id is null) \
             from caller_lines where parent_id is null and deleted_at is null group by 1, 2 \
             except \
             select partner_id, tenant_id, listed, unallocated from caller_line_counts \
             where listed > 0)) differences";
    for change in changes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(change.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{change}: {e}"));
        let differences: i64 = sqlx::query_scalar(mismatch).fetch_one(&pool).await.unwrap();
        assert_eq!(differences, 0, "counts drifted after: {change}");
    }
    let left: i64 = sqlx::query_scalar("select count(*) from caller_line_counts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "truncate clears the counts");
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
