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
