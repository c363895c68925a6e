//! The SQL operators run: every block of the README and docs/operations.md against a real
//! database, as the documented writer role (the roles' own blocks as the owner), the split
//! function and the service view (SPEC §1).

use agent_api::store::demo;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_documented_operator_sql_runs(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let line = "a1b93390-3e6e-4bc4-b23b-5693484fd0f7";
    let lines_before: i64 = sqlx::query_scalar("select count(*) from caller_lines")
        .fetch_one(&pool)
        .await
        .unwrap();
    let values = [
        ("partner", demo::DEMO_PARTNER_ID.to_string()),
        ("user", "00000000-0000-0000-0000-000000000002".to_string()),
        ("line", line.to_string()),
        ("name", "运营测试".to_string()),
        ("email", "ops@example.com".to_string()),
        ("phone", "13900000000".to_string()),
        ("issued_at", "2030-01-01T00:00:00Z".to_string()),
        ("days", "36500".to_string()),
        ("database", database_name(&pool)),
        ("tenant_name", "云节点二".to_string()),
        ("tenant", demo::DEMO_TENANT_ID.to_string()),
        ("caller_number", "caller-new".to_string()),
        ("count", "1000".to_string()),
        ("pid", "0".to_string()),
    ];
    // The roles' blocks, as the owner runs them (with their psql variables).
    roles::reader(&pool).await;
    let writer = roles::writer(&pool).await;
    let as_writer = roles::pool_as(&pool, &writer).await;
    let blocks: Vec<String> = docs::documented_sql_blocks(&values, &["reader", "writer"]);
    assert!(blocks.len() >= 7, "the documents have their SQL blocks");
    for block in blocks {
        sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .execute(&as_writer)
            .await
            .unwrap_or_else(|e| panic!("documented SQL failed as the writer: {e}\n{block}"));
    }
    as_writer.close().await;
    // One line, then a thousand at once, then the split's child (ids by default).
    let lines_after: i64 = sqlx::query_scalar("select count(*) from caller_lines")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lines_after - lines_before, 1 + 1000 + 1);
    let tenants: i64 = sqlx::query_scalar("select count(*) from tenants where name = '云节点二'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tenants, 1, "the new tenant");
    // The split took 1 of the line's 10 and made a child; the line was then soft-deleted.
    let (parent_call_line, children): (i32, i64) = sqlx::query_as(
        "select call_line, (select count(*) from caller_lines where parent_id = $1::uuid) \
         from caller_lines where id = $1::uuid",
    )
    .bind(line)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((parent_call_line, children), (9, 1));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_split_cannot_take_more_than_the_line_has(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let outcome =
        sqlx::query("select split_caller_line('7aa839fb-4b04-40f3-ab16-0da39aeacf76', 2)")
            .execute(&pool)
            .await;
    assert!(outcome.is_err(), "the line has a call_line of 1");
    let missing = sqlx::query("select split_caller_line(gen_random_uuid(), 1)")
        .execute(&pool)
        .await;
    assert!(missing.is_err());
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

/// The operations guide's commands name `target/release/agent-api`, which the quick start does
/// not build: the guide says how to build it before its first command, and that the quick
/// start's binary takes the same commands.
#[test]
fn the_operations_guide_says_which_binary_its_commands_run_before_the_first() {
    let guide: String = include_str!("../../docs/operations.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let first_command = guide
        .find("target/release/agent-api migrate")
        .expect("the guide's commands");
    let built = guide
        .find("cargo build --release --locked")
        .expect("the guide says how to build the binary");
    assert!(built < first_command, "built before it is run");
    assert!(guide[..first_command].contains("target/debug/agent-api"));
}
