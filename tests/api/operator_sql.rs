//! The SQL operators run: every block of the README and docs/operations.md against a real
//! database, the split function and the service view (SPEC §1).

use agent_api::store::demo;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

/// The ```sql blocks of the documents, with psql's `:'name'`, `:"name"` and `:name` variables
/// filled in.
fn readme_sql(values: &[(&str, String)]) -> Vec<String> {
    readme_blocks()
        .into_iter()
        .map(|block| fill(block, values))
        .collect()
}

/// The documents' SQL block that contains `text`, filled in.
pub fn readme_block(text: &str, values: &[(&str, String)]) -> String {
    let block = readme_blocks()
        .into_iter()
        .find(|block| block.contains(text))
        .unwrap_or_else(|| panic!("no documented SQL block contains {text:?}"));
    fill(block, values)
}

fn readme_blocks() -> Vec<String> {
    let documents = [
        include_str!("../../README.md"),
        include_str!("../../docs/operations.md"),
    ];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in documents.iter().flat_map(|document| document.lines()) {
        match (&mut current, line.trim_start()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn fill(mut block: String, values: &[(&str, String)]) -> String {
    for (name, value) in values {
        block = block.replace(&format!(":'{name}'"), &format!("'{value}'"));
        block = block.replace(&format!(":\"{name}\""), &format!("\"{value}\""));
        block = block.replace(&format!(":{name}"), value);
    }
    assert!(
        !block.contains(":'") && !block.contains(":\""),
        "an unfilled psql variable in:\n{block}"
    );
    block
}

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
        ("reader", reader_role()),
        ("password", "unused-with-trust-auth".to_string()),
        ("database", database_name(&pool)),
        ("tenant_name", "云节点二".to_string()),
        ("tenant", demo::DEMO_TENANT_ID.to_string()),
        ("caller_number", "caller-new".to_string()),
        ("count", "1000".to_string()),
        ("pid", "0".to_string()),
    ];
    let blocks = readme_sql(&values);
    assert!(blocks.len() >= 8, "the documents have their SQL blocks");
    for block in blocks {
        sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("documented SQL failed: {e}\n{block}"));
    }
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
    drop_role(&pool, &values[8].1).await;
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
