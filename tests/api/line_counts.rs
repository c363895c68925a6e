//! The counts behind every list's `total` (caller_line_counts, kept by the statement triggers of
//! migration 0800) agree with a recount after any statement, however many rows it touches, and
//! writers of one (partner, tenant) never wait on each other for them.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::support::*;

/// Runs each statement in turn; after each, the counts agree with a recount.
async fn assert_counts_follow(pool: &PgPool, statements: impl IntoIterator<Item = String>) {
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        assert_eq!(
            disagreements(pool).await,
            0,
            "counts drifted after: {statement}"
        );
    }
}

/// Pairs whose counts differ from a recount of caller_lines.
async fn disagreements(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from ( \
            (select partner_id, tenant_id, listed, unallocated from caller_line_counts \
             where listed <> 0 or unallocated <> 0 \
             except \
             select partner_id, tenant_id, count(*), count(*) filter (where user_id is null) \
             from caller_lines where parent_id is null and deleted_at is null group by 1, 2) \
            union all \
            (select partner_id, tenant_id, count(*), count(*) filter (where user_id is null) \
             from caller_lines where parent_id is null and deleted_at is null group by 1, 2 \
             except \
             select partner_id, tenant_id, listed, unallocated from caller_line_counts \
             where listed <> 0 or unallocated <> 0)) differences",
    )
    .fetch_one(pool)
    .await
    .unwrap()
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
    assert_counts_follow(&pool, changes).await;
    let left: i64 = sqlx::query_scalar("select count(*) from caller_line_counts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "truncate clears the counts");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bulk_statements_keep_the_counts_equal_to_a_recount(pool: PgPool) {
    let tenants = [tenant(&pool, "甲").await, tenant(&pool, "乙").await];
    let partners = [partner(&pool).await, partner(&pool).await];
    let customers = [
        user(&pool, partners[0], "customer", "甲的客户").await,
        user(&pool, partners[1], "sub_account", "乙的子账户").await,
    ];
    let [t0, t1] = tenants;
    let [p0, p1] = partners;
    let [c0, c1] = customers;
    let statements = [
        // 2,000 lines over both partners and tenants, a third of them allocated.
        format!(
            "insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, \
             call_line) \
             select gen_random_uuid(), (array['{t0}','{t1}']::uuid[])[1 + n % 2], \
                    (array['{p0}','{p1}']::uuid[])[1 + n / 1000], \
                    case when n % 3 = 0 then (array['{c0}','{c1}']::uuid[])[1 + n / 1000] end, \
                    'l' || n, 'c', 2 \
             from generate_series(0, 1999) n"
        ),
        // Move every fourth line of one pair to the other partner and tenant, unallocated.
        format!(
            "update caller_lines set partner_id = '{p1}', tenant_id = '{t1}', user_id = null \
             where partner_id = '{p0}' and tenant_id = '{t0}' and name::text ~ '[048]$'"
        ),
        // Allocate the partner's unallocated lines, and free the other's.
        format!("update caller_lines set user_id = '{c0}' where partner_id = '{p0}' and user_id is null"),
        format!("update caller_lines set user_id = null where partner_id = '{p1}' and user_id = '{c1}'"),
        // Soft-delete a fifth of everything; restore some of it.
        "update caller_lines set deleted_at = now() where name ~ '[05]$'".to_string(),
        "update caller_lines set deleted_at = null where name ~ '5$'".to_string(),
        // Split 100 lines and shrink their parents in one statement.
        "with parents as (select * from caller_lines where parent_id is null and deleted_at is null \
                          and call_line = 2 order by name limit 100), \
              children as (insert into caller_lines (id, tenant_id, partner_id, parent_id, name, \
                           caller_number, call_line) \
                           select gen_random_uuid(), tenant_id, partner_id, id, name || '-拆', \
                           caller_number, 1 from parents returning 1), \
              shrunk as (update caller_lines set call_line = 1 \
                         where id in (select id from parents) returning 1) \
         select (select count(*) from children), (select count(*) from shrunk)"
            .to_string(),
        // Delete lines outright (none with split children), and a split child turned listed.
        "delete from caller_lines l where name ~ '7$' and parent_id is null \
         and not exists (select 1 from caller_lines c where c.parent_id = l.id)"
            .to_string(),
        "update caller_lines set parent_id = null where parent_id is not null and name ~ '1-拆$'"
            .to_string(),
        // Several kinds of change in one statement.
        format!(
            "with gone as (delete from caller_lines where name ~ '3$' and parent_id is null \
                           and not exists (select 1 from caller_lines c where c.parent_id = caller_lines.id) \
                           returning 1), \
                  moved as (update caller_lines set tenant_id = '{t0}' where name ~ '9$' returning 1), \
                  added as (insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) \
                            select gen_random_uuid(), '{t1}', '{p1}', 'new' || n, 'c', 1 \
                            from generate_series(1, 50) n returning 1) \
             select (select count(*) from gone), (select count(*) from moved), (select count(*) from added)"
        ),
    ];
    assert_counts_follow(&pool, statements).await;
    let listed: i64 =
        sqlx::query_scalar("select coalesce(sum(listed), 0)::bigint from caller_line_counts")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        listed > 1000,
        "the statements left lines to count: {listed}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn writers_of_one_pair_never_wait_on_each_other_for_the_counts(pool: PgPool) {
    let tenant = tenant(&pool, "甲").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let insert = format!(
        "insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) \
         values (gen_random_uuid(), '{tenant}', '{partner}', 'l', 'c', 1)"
    );
    // The first writer keeps its transaction open after its statement…
    let mut first = pool.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert.clone()))
        .execute(&mut *first)
        .await
        .unwrap();
    // …and the second writes the same pair without waiting for it.
    let mut second = pool.begin().await.unwrap();
    sqlx::raw_sql("set local lock_timeout = '2s'")
        .execute(&mut *second)
        .await
        .unwrap();
    let started = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert.clone()))
        .execute(&mut *second)
        .await
        .expect("the second writer is not blocked by the first");
    assert!(started.elapsed() < Duration::from_secs(1));
    second.commit().await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(disagreements(&pool).await, 0);

    // Folding keeps a pair's rows few, however many statements wrote it.
    for _ in 0..50 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert.clone()))
            .execute(&pool)
            .await
            .unwrap();
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from caller_line_count_deltas")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(rows <= 2, "{rows} rows for one pair");
    assert_eq!(disagreements(&pool).await, 0);
}

/// Writers under repeatable read (an ORM's default, say) cannot fold rows another writer may
/// have folded since their snapshot: they try, and a pair's rows stay bounded (they used to
/// grow by one per statement, and every `total` read them all).
#[sqlx::test(migrator = "MIGRATOR")]
async fn repeatable_read_writers_keep_a_pairs_count_rows_bounded(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    insert_at_repeatable_read(&pool, tenant, partner, 1000).await;
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from caller_line_count_deltas where partner_id = $1 and tenant_id = $2",
    )
    .bind(partner)
    .bind(tenant)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(rows <= 33, "{rows} count rows for one pair");
    let app = TestApp::spawn(pool.clone()).await;
    let body = json(
        app.get_as(partner, &format!("/agent-api/tenant/{tenant}/callerline"))
            .await,
    )
    .await;
    assert_eq!(body["meta"]["total"], 1000, "{}", body["meta"]);
    assert_eq!(disagreements(&pool).await, 0);
}
