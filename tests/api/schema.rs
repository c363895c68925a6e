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

/// Runs each statement, expecting Postgres to refuse it or accept it.
async fn assert_refused(pool: &PgPool, refused: &[String], accepted: &[String]) {
    for statement in refused {
        let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await;
        assert!(outcome.is_err(), "should be refused: {statement}");
    }
    for statement in accepted {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("should be accepted: {statement}: {e}"));
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn lines_and_users_stay_with_their_partner(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let a = partner(&pool).await;
    let b = partner(&pool).await;
    let a_customer = user(&pool, a, "customer", "甲客户").await;
    let a_sub_account = user(&pool, a, "sub_account", "甲子账户").await;
    let movable_customer = user(&pool, a, "customer", "新客户").await;
    let a_line = line(tenant, a).user(a_customer).insert(&pool).await;
    let new_line = |owner: Uuid, user: Uuid| {
        format!(
            "insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, \
             call_line) values (gen_random_uuid(), '{tenant}', '{owner}', '{user}', 'l', 'c', 1)"
        )
    };
    let refused = [
        // B's line allocated to A's customer: B's list would show A's customer.
        new_line(b, a_customer),
        new_line(b, a),
        // A customer of a customer, and a line owned by a customer.
        format!(
            "insert into users (id, type, partner_id, name) \
             values (gen_random_uuid(), 'customer', '{a_customer}', 'x')"
        ),
        format!(
            "insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) \
             values (gen_random_uuid(), '{tenant}', '{a_customer}', 'l', 'c', 1)"
        ),
        // Moves that would leave an allocation behind.
        format!("update caller_lines set partner_id = '{b}' where id = '{a_line}'"),
        format!("update users set partner_id = '{b}' where id = '{a_customer}'"),
        format!("update users set type = 'customer', partner_id = '{b}' where id = '{a}'"),
    ];
    let accepted = [
        new_line(a, a),
        new_line(a, a_customer),
        new_line(a, a_sub_account),
        // A line moves to another partner with its allocation taken back.
        format!("update caller_lines set partner_id = '{b}', user_id = null where id = '{a_line}'"),
        // A customer with no line of its partner moves.
        format!("update users set partner_id = '{b}' where id = '{movable_customer}'"),
    ];
    assert_refused(&pool, &refused, &accepted).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn instants_are_finite_and_within_1970_to_9000(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let line = line(tenant, partner).insert(&pool).await;
    let mut refused = Vec::new();
    for value in [
        "infinity",
        "-infinity",
        "1969-12-31 23:59:59+00",
        "9000-01-01 00:00:00+00",
    ] {
        for column in [
            "deadline_at",
            "begin_at",
            "created_at",
            "updated_at",
            "deleted_at",
        ] {
            refused.push(format!(
                "update caller_lines set {column} = '{value}' where id = '{line}'"
            ));
        }
        refused.push(format!(
            "update users set tokens_valid_after = '{value}' where id = '{partner}'"
        ));
        refused.push(format!(
            "update tenants set deleted_at = '{value}' where id = '{tenant}'"
        ));
    }
    let accepted = [
        format!("update caller_lines set deadline_at = null where id = '{line}'"),
        format!(
            "update caller_lines set begin_at = '1970-01-01 00:00:00+00', \
             deadline_at = '8999-12-31 23:59:59.999999+00' where id = '{line}'"
        ),
    ];
    assert_refused(&pool, &refused, &accepted).await;
}
