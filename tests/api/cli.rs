//! The binary as operators run it (SPEC §5): seed-demo, token issue/inspect, what each command
//! requires, settings errors, its output through pipes and files, and SIGTERM (`migrate` has
//! `migrations`).

use std::process::Command;
use std::time::Duration;

use agent_api::store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::process::{
    agent_api, output_of, run_ok, spawn_serve, terminate, wait_for_exit,
};
use crate::support::*;

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

#[test]
fn a_bad_setting_refuses_to_start_with_one_line_naming_it() {
    // Each named as operators set it, by its variable.
    let cases = [
        ("APP__SERVER__PORT", "eighty", "APP__SERVER__PORT"),
        (
            "APP__LEGACY__CALLERLINE",
            "sometimes",
            r#"APP__LEGACY__CALLERLINE: "sometimes" is not one of auto, on, off"#,
        ),
        (
            "APP__AUTH__JWT_SECRET",
            "too-short",
            "APP__AUTH__JWT_SECRET",
        ),
        (
            "APP__API__DISPLAY_TIMEZONE",
            "Moon/Base",
            "APP__API__DISPLAY_TIMEZONE",
        ),
        (
            "APP__RATE_LIMIT__INSTANSES",
            "2",
            "APP__RATE_LIMIT__INSTANSES is not a setting",
        ),
    ];
    for (name, value, named) in cases {
        let output = output_of(
            agent_api(Some("postgres://127.0.0.1:1/x"))
                .env(name, value)
                .arg("serve"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "{name}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = output_of(agent_api(None).arg("migrate"));
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
    let keys = agent_api::tokens::KeyRing::from_settings(&test_settings().auth).unwrap();
    let verified = keys.verify(token, chrono::Utc::now()).unwrap();
    assert_eq!(verified.partner_id, partner);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sigterm_drains_and_exits_zero(pool: PgPool) {
    let mut serving = spawn_serve(&roles::reader_url(&pool).await, &[]);
    let ready = reqwest::get(serving.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    terminate(&serving.child);
    assert_eq!(
        wait_for_exit(&mut serving.child, Duration::from_secs(20)).code(),
        Some(0)
    );
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
    let output = output_of(revoked.args(["token", "inspect", token.trim()]));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("revoked"));

    let mut garbage = agent_api(None);
    with_config(&mut garbage);
    let output = output_of(garbage.args(["token", "inspect", "nonsense"]));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("rejected"));
    std::fs::remove_file(config).unwrap();
}

#[sqlx::test(migrations = false)]
async fn migrate_and_seed_demo_need_no_signing_secret_and_serve_says_it_does(pool: PgPool) {
    let url = database_url(&pool);
    let without_secret = |command: &str| {
        let mut binary = agent_api(Some(&url));
        binary.env_remove("APP__AUTH__JWT_SECRET").arg(command);
        binary
    };
    run_ok(&mut without_secret("migrate"));
    run_ok(&mut without_secret("seed-demo"));
    let output = output_of(&mut without_secret("serve"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("APP__AUTH__JWT_SECRET"), "{stderr}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_token_issued_after_a_revocation_in_the_same_second_is_accepted(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = TestApp::spawn(pool.clone()).await;
    // Early in a second, a revocation stamped late in it: `now()` had it been made then.
    while chrono::Utc::now().timestamp_subsec_millis() > 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query(
        "update users set tokens_valid_after = \
         date_trunc('second', clock_timestamp()) + interval '999 ms' where id = $1",
    )
    .bind(partner)
    .execute(&pool)
    .await
    .unwrap();
    let token = run_ok(agent_api(None).args(["token", "issue", "--partner", &partner.to_string()]));
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    let response = app
        .request(&path, Some(&format!("Bearer {}", token.trim())))
        .await;
    assert_eq!(
        response.status(),
        200,
        "issued after the revocation, so not revoked by it"
    );
}

/// A secret's file that is empty or unreadable stops every command in one line: `token issue`
/// used to take an empty `DATABASE_URL_FILE` for no database and sign a token for any id,
/// skipping the partner check.
#[test]
fn token_issue_with_an_empty_or_unreadable_database_url_file_signs_nothing() {
    let dir = std::env::temp_dir().join(format!("agent-api-empty-url-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("url");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.join("no-such-file");
    for file in [&empty, &missing] {
        let output = output_of(agent_api(None).env("DATABASE_URL_FILE", file).args([
            "token",
            "issue",
            "--partner",
            &Uuid::new_v4().to_string(),
        ]));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(output.stdout.is_empty(), "no token printed");
        assert!(stderr.contains("DATABASE_URL_FILE"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reader_that_goes_away_early_is_no_error() {
    // `agent-api openapi | head -n 1`: the pipe closes after the first line.
    let mut child = agent_api(None)
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    assert_eq!(first_line.trim(), "{");
    let status = wait_for_exit(&mut child, crate::support::process::DEADLINE);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[sqlx::test(migrations = false)]
async fn logs_that_go_to_a_file_carry_no_colour_and_no_notices(pool: PgPool) {
    let url = database_url(&pool);
    for _ in 0..2 {
        let output = output_of(
            agent_api(Some(&url))
                .env("APP__LOG__FORMAT", "pretty")
                .arg("migrate"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("at this build's schema"), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "escape codes: {stderr:?}");
        assert!(!stderr.contains("already exists, skipping"), "{stderr}");
    }
}

/// `token issue` checks the partner when it can (DATABASE_URL set): a token for a user that is
/// unknown, not a partner, or deleted is refused in one line (exit 2); `token inspect` says
/// which check refuses a token.
#[sqlx::test(migrator = "MIGRATOR")]
async fn token_commands_say_which_check_refuses_a_partner(pool: PgPool) {
    let url = database_url(&pool);
    let partner = partner(&pool).await;
    let customer = user(&pool, partner, "customer", "客户").await;
    let deleted = crate::support::partner(&pool).await;
    soft_delete_user(&pool, deleted).await;
    let issue = |id: Uuid| {
        output_of(agent_api(Some(&url)).args(["token", "issue", "--partner", &id.to_string()]))
    };
    for (id, check) in [
        (Uuid::new_v4(), "no user has this id"),
        (customer, "is a customer, not a partner"),
        (deleted, "was deleted"),
    ] {
        let output = issue(id);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(output.stdout.is_empty(), "no token printed");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(check), "{check}: {stderr}");
    }
    let token = String::from_utf8(issue(partner).stdout).unwrap();
    let inspect = || output_of(agent_api(Some(&url)).args(["token", "inspect", token.trim()]));
    assert!(inspect().status.success());
    sqlx::query("update users set tokens_valid_after = now() + interval '1 second' where id = $1")
        .bind(partner)
        .execute(&pool)
        .await
        .unwrap();
    let revoked = String::from_utf8_lossy(&inspect().stderr).into_owned();
    assert!(
        revoked.contains("rejected by the partner check: tokens issued before"),
        "{revoked}"
    );
    soft_delete_user(&pool, partner).await;
    let gone = String::from_utf8_lossy(&inspect().stderr).into_owned();
    assert!(gone.contains("was deleted"), "{gone}");
}

/// What the operator must fix is said in one line, exit 2, at once: a database that does not
/// exist (it used to be retried for a minute, then printed twice with Postgres's source line),
/// a port already taken (named by its variable).
#[sqlx::test(migrations = false)]
async fn a_missing_database_or_a_taken_port_is_one_line_and_exit_2(pool: PgPool) {
    let missing = database_url(&pool).replace(&database_name(&pool), "no_such_database");
    for command in ["migrate", "serve", "seed-demo"] {
        let started = std::time::Instant::now();
        let output = output_of(agent_api(Some(&missing)).arg(command));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        let lines: Vec<&str> = stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("agent-api:"))
            .collect();
        assert_eq!(lines.len(), 1, "{command}: {stderr}");
        assert!(
            lines[0].contains("no_such_database") && lines[0].contains("does not exist"),
            "{stderr}"
        );
        assert!(!stderr.contains(" line "), "no source locations: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{command} waited"
        );
    }
    run_ok(agent_api(Some(&database_url(&pool))).arg("migrate"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = output_of(
        agent_api(Some(&database_url(&pool)))
            .env("APP__SERVER__HOST", "127.0.0.1")
            .env("APP__SERVER__PORT", &port)
            .arg("serve"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("APP__SERVER__PORT"), "{stderr}");
    // The operations port too (it used to exit 1, a fault, where the docs promise 2).
    let output = output_of(
        agent_api(Some(&database_url(&pool)))
            .env("APP__SERVER__HOST", "127.0.0.1")
            .env("APP__SERVER__PORT", "0")
            .env("APP__OPS__PORT", &port)
            .arg("serve"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("APP__OPS__PORT"), "{stderr}");
}

/// Ctrl-C stops as SIGTERM does: requests drained, exit 0, no "forced" shutdown.
#[sqlx::test(migrator = "MIGRATOR")]
async fn ctrl_c_drains_like_sigterm(pool: PgPool) {
    let mut serving = spawn_serve(&roles::reader_url(&pool).await, &[]);
    let sent = std::process::Command::new("kill")
        .args(["-INT", &serving.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(
        wait_for_exit(&mut serving.child, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert!(!serving.log().contains("forced"), "{}", serving.log());
}

/// `.env.example` is an env file as it stands: sourced by a shell with only the secret
/// changed (and, here, the test's database and free ports), `serve` starts.
#[sqlx::test(migrator = "MIGRATOR")]
async fn env_example_sourced_by_a_shell_starts_serve(pool: PgPool) {
    let script = format!(
        "set -a; . ./.env.example; set +a; \
         export APP__AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'); \
         export DATABASE_URL='{}' APP__SERVER__HOST=127.0.0.1 APP__SERVER__PORT=0 APP__OPS__PORT=0; \
         exec '{}' serve",
        database_url(&pool),
        crate::support::process::BINARY
    );
    let mut shell = crate::support::process::Running(
        std::process::Command::new("bash")
            .args(["-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = std::io::BufReader::new(shell.0.stdout.take().unwrap());
    let serving = std::io::BufRead::lines(stdout)
        .map_while(Result::ok)
        .any(|line| line.contains("agent-api serving"));
    if !serving {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut shell.0.stderr.take().unwrap(), &mut stderr).ok();
        panic!("serve did not start: {stderr}");
    }
}
