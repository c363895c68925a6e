//! `agent-api migrate` (SPEC §1): it builds the schema on an empty database, reruns harmlessly,
//! and stops on data a new rule refuses, naming the rows and where the README says to fix them.

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::process::{agent_api, run_ok};
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

/// A database at migration 0800 with `mess` done to it, then `agent-api migrate`: its stderr.
async fn migrate_after(pool: &PgPool, mess: &str) -> String {
    MIGRATOR.run_to(20261127000800, pool).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(mess.to_string()))
        .execute(pool)
        .await
        .unwrap();
    let output = agent_api(Some(&database_url(pool)))
        .arg("migrate")
        .output()
        .unwrap();
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
