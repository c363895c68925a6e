//! `agent-api migrate` (SPEC §1): it builds the schema on an empty database, reruns harmlessly,
//! and stops on data a new rule refuses, naming the rows and where the README says to fix them.

use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::support::process::{Running, agent_api, finished, output_of, run_ok, wait_for_exit};
use crate::support::*;

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

/// A `DATABASE_URL` left pointing at another project's database (its own sqlx history and a
/// `users` table of its own) is refused before anything is written: `migrate` used to create
/// `tenants` there and record a version in that project's `_sqlx_migrations`. `serve` too.
#[sqlx::test(migrations = false)]
async fn another_projects_database_is_refused_before_anything_is_written(pool: PgPool) {
    sqlx::raw_sql(
        "create table _sqlx_migrations (version bigint primary key, description text not null, \
           installed_on timestamptz not null default now(), success boolean not null, \
           checksum bytea not null, execution_time bigint not null); \
         insert into _sqlx_migrations (version, description, success, checksum, execution_time) \
         values (20230101000000, 'create users', true, '\\x00', 1), \
                (20230201000000, 'add orders', true, '\\x00', 1); \
         create table users (id serial primary key, login text)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let what_is_there = || async {
        let tables: Vec<String> = sqlx::query_scalar(
            "select table_name::text from information_schema.tables \
             where table_schema = 'public' order by 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("select version from _sqlx_migrations order by 1")
                .fetch_all(&pool)
                .await
                .unwrap();
        (tables, versions)
    };
    let before = what_is_there().await;
    for command in ["migrate", "serve"] {
        let output = output_of(agent_api(Some(&database_url(&pool))).arg(command));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{command}: {stderr}");
        assert!(
            stderr.contains("another project's migrations") && stderr.contains("20230101000000"),
            "{command}: {stderr}"
        );
        assert_eq!(what_is_there().await, before, "{command} wrote nothing");
    }
}

/// A database at migration 0800 with `mess` done to it, then `agent-api migrate`: its stderr.
async fn migrate_after(pool: &PgPool, mess: &str) -> String {
    MIGRATOR.run_to(20261127000800, pool).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(mess.to_string()))
        .execute(pool)
        .await
        .unwrap();
    let output = output_of(agent_api(Some(&database_url(pool))).arg("migrate"));
    assert!(!output.status.success(), "migrate should stop");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[sqlx::test(migrations = false)]
async fn migrate_stops_on_lines_allocated_across_partners_naming_them(pool: PgPool) {
    let (tenant, a, b, a_customer, line) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let stderr = migrate_after(
        &pool,
        &format!(
            "insert into tenants (id, name) values ('{tenant}', 't'); \
             insert into users (id, type, name) values ('{a}', 'partner', 'a'), ('{b}', 'partner', 'b'); \
             insert into users (id, type, partner_id, name) values ('{a_customer}', 'customer', '{a}', 'c'); \
             insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, call_line) \
             values ('{line}', '{tenant}', '{b}', '{a_customer}', 'l', 'c', 1)"
        ),
    )
    .await;
    assert!(
        stderr.contains("allocated to a user of another partner"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&line.to_string()),
        "names the line: {stderr}"
    );
    assert!(stderr.contains("README"), "says where the fix is: {stderr}");
    // The README's fix: take the line back from the stranger; then it migrates.
    sqlx::query("update caller_lines set user_id = null where id = $1")
        .bind(line)
        .execute(&pool)
        .await
        .unwrap();
    run_ok(agent_api(Some(&database_url(&pool))).arg("migrate"));
}

#[sqlx::test(migrations = false)]
async fn migrate_stops_on_infinite_instants_naming_them(pool: PgPool) {
    let (tenant, partner, line) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let stderr = migrate_after(
        &pool,
        &format!(
            "insert into tenants (id, name) values ('{tenant}', 't'); \
             insert into users (id, type, name) values ('{partner}', 'partner', 'p'); \
             insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line, deadline_at) \
             values ('{line}', '{tenant}', '{partner}', 'l', 'c', 1, 'infinity')"
        ),
    )
    .await;
    assert!(stderr.contains("deadline_at"), "{stderr}");
    assert!(
        stderr.contains(&line.to_string()),
        "names the line: {stderr}"
    );
    sqlx::query("update caller_lines set deadline_at = null where id = $1")
        .bind(line)
        .execute(&pool)
        .await
        .unwrap();
    run_ok(agent_api(Some(&database_url(&pool))).arg("migrate"));
}

/// The last migration of the 0700 era: the listing cache's first announcements.
const ERA_0700: i64 = 20261126000700;
/// The last migration released before this round's.
const RELEASED_1000: i64 = 20261127001000;

/// A database at migration 0700 holding `lines` caller lines, loaded as a restore loads them
/// (triggers off, counts rebuilt after): 10 tenants, 50 partners with five customers each, ~10%
/// split lines, ~2% deleted, ~30% unallocated.
async fn era_0700_database(pool: &PgPool, lines: i64) {
    MIGRATOR.run_to(ERA_0700, pool).await.unwrap();
    let mut connection = pool.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "set session_replication_role = replica;
         insert into tenants (id, name, is_default)
         select md5('t' || n)::uuid, '云节点' || n, n = 1 from generate_series(1, 10) n;
         insert into users (id, type, name)
         select md5('p' || n)::uuid, 'partner', '伙伴' || n from generate_series(1, 50) n;
         insert into users (id, type, partner_id, name)
         select md5('c' || p || '-' || c)::uuid, 'customer', md5('p' || p)::uuid, '客户'
         from generate_series(1, 50) p, generate_series(1, 5) c;
         insert into caller_lines (id, tenant_id, partner_id, user_id, parent_id, name,
                                   caller_number, call_line, deleted_at, created_at)
         select md5('l' || n)::uuid, md5('t' || (1 + n % 10))::uuid, md5('p' || (1 + n % 50))::uuid,
                case when n % 10 < 3 then null else md5('c' || (1 + n % 50) || '-' || (1 + n % 5))::uuid end,
                case when n % 10 = 9 and n > 50 then md5('l' || (n - 50))::uuid end,
                '线路' || n, 'c' || n, 1 + n % 30,
                case when n % 50 = 0 then now() end,
                timestamptz '2022-01-01 00:00:00+08' + n * interval '1 minute'
         from generate_series(1, {lines}) n;
         set session_replication_role = origin;
         select rebuild_caller_line_counts();
         analyze;"
    )))
    .execute(&mut *connection)
    .await
    .unwrap();
}

/// `agent-api migrate` in its own session: the service's statement timeout (set here far
/// shorter than migrations 0900 and 1000 take over 200,000 lines) is never a migration's.
#[sqlx::test(migrations = false)]
async fn an_upgrade_of_a_large_database_ignores_the_services_statement_timeout(pool: PgPool) {
    era_0700_database(&pool, 200_000).await;
    let output = output_of(
        agent_api(Some(&database_url(&pool)))
            .env("APP__DATABASE__STATEMENT_TIMEOUT_MS", "10")
            .arg("migrate"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for migration in MIGRATOR.iter().filter(|m| m.version > ERA_0700) {
        let version = migration.version.to_string();
        let applied = stderr
            .lines()
            .any(|line| line.contains("applied migration") && line.contains(&version));
        assert!(
            applied,
            "says {version} was applied, with its time: {stderr}"
        );
    }
    assert!(
        !stderr.contains("create "),
        "no migration's SQL in the log: {stderr}"
    );
    let (lines, listed, counted): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from caller_lines), \
                (select count(*) from caller_lines where parent_id is null and deleted_at is null), \
                (select sum(listed)::bigint from caller_line_counts)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(lines, 200_000, "nothing lost");
    assert_eq!(counted, listed, "the counts came through");
}

/// Lines of a child's stderr, gathered as it writes them.
fn gather_stderr(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let gathered = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let into = gathered.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            let mut gathered = into.lock().unwrap();
            gathered.push_str(&line);
            gathered.push('\n');
        }
    });
    gathered
}

/// Behind a long transaction (a report, pg_dump), a migration waits for its lock at most the
/// lock timeout per try, so reads queued behind it wait no longer; each try names the blocker;
/// and the migration goes through once the transaction ends.
#[sqlx::test(migrations = false)]
async fn a_migration_behind_an_open_transaction_waits_bounded_names_it_and_then_applies(
    pool: PgPool,
) {
    MIGRATOR.run_to(RELEASED_1000, &pool).await.unwrap();
    let url = database_url(&pool);
    let mut report = sqlx::PgConnection::connect(&format!("{url}?application_name=nightly-report"))
        .await
        .unwrap();
    sqlx::raw_sql("begin; select count(*) from caller_lines")
        .execute(&mut report)
        .await
        .unwrap();
    let report_pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut report)
        .await
        .unwrap();
    let mut migrate = Running(
        agent_api(Some(&url))
            .env("APP__MIGRATE__LOCK_TIMEOUT_MS", "500")
            .env("APP__MIGRATE__RETRIES", "50")
            .env("APP__MIGRATE__RETRY_WAIT_MS", "200")
            .env("APP__LOG__FORMAT", "pretty")
            .arg("migrate")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = gather_stderr(&mut migrate.0);
    eventually("the migration names the report as its blocker", || async {
        stderr
            .lock()
            .unwrap()
            .contains(&format!("blocked by pid {report_pid}"))
    })
    .await;
    assert!(stderr.lock().unwrap().contains("nightly-report"));
    // A read arriving while the migration waits queues behind it: at most the lock timeout.
    eventually("the migration waits for its lock again", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity \
             where application_name = 'agent-api migrate' and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    let started = std::time::Instant::now();
    sqlx::query("select count(*) from caller_lines")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "a read waited {:?}",
        started.elapsed()
    );
    sqlx::raw_sql("commit").execute(&mut report).await.unwrap();
    let status = wait_for_exit(&mut migrate.0, std::time::Duration::from_secs(30));
    assert!(status.success(), "{}", stderr.lock().unwrap());
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap() as usize,
        MIGRATOR.iter().count()
    );
}

/// A blocker that never goes away: after the last try, one line naming it, and exit 2.
#[sqlx::test(migrations = false)]
async fn a_migration_blocked_past_its_retries_exits_2_naming_the_blocker(pool: PgPool) {
    MIGRATOR.run_to(RELEASED_1000, &pool).await.unwrap();
    let url = database_url(&pool);
    let mut report = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("begin; select count(*) from caller_lines")
        .execute(&mut report)
        .await
        .unwrap();
    let (status, _, stderr) = finished(
        agent_api(Some(&url))
            .env("APP__MIGRATE__LOCK_TIMEOUT_MS", "200")
            .env("APP__MIGRATE__RETRIES", "1")
            .env("APP__MIGRATE__RETRY_WAIT_MS", "100")
            .arg("migrate"),
        std::time::Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("agent-api: migration 20261204001100"),
        "{last}"
    );
    assert!(
        last.contains("AccessExclusiveLock on caller_lines blocked by pid"),
        "{last}"
    );
    assert!(last.contains("pg_terminate_backend"), "{last}");
}
