//! What the schema itself enforces and keeps, whoever writes the SQL (SPEC §1).

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

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
async fn line_counts_follow_every_kind_of_change(pool: PgPool) {
    let tenant_a = tenant(&pool, "甲").await;
    let tenant_b = crate::support::tenant(&pool, "乙").await;
    let partner = partner(&pool).await;
    let other = crate::support::partner(&pool).await;
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
