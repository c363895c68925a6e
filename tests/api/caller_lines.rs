//! GET /agent-api/tenant/{id}/callerline (SPEC §2): which lines a page holds and how they read,
//! through real HTTP on a fresh database. Paging is in `pagination`, errors in `list_errors`.

use agent_api::store::demo;
use chrono::{TimeZone, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use agent_api::http::openapi::VENDOR_EXAMPLE;

use crate::support::*;

pub fn lines_path(tenant: Uuid, query: &str) -> String {
    format!("/agent-api/tenant/{tenant}/callerline{query}")
}

/// A partner with `count` lines on a fresh tenant, created one second apart.
pub async fn partner_with_lines(pool: &PgPool, count: i64) -> (Uuid, Uuid, Vec<Uuid>) {
    let tenant = tenant(pool, "云节点").await;
    let partner = partner(pool).await;
    let mut lines = Vec::new();
    for n in 0..count {
        lines.push(line(tenant, partner).nth(n).insert(pool).await);
    }
    (tenant, partner, lines)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_demo_reproduces_the_vendor_fixture_byte_for_byte(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::spawn(pool).await;
    let response = app
        .get_as(
            demo::DEMO_PARTNER_ID,
            &lines_path(demo::DEMO_TENANT_ID, "?page=1&per_page=2"),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    // Text, not parsed maps: key order and value types are part of the contract.
    assert_eq!(
        compact_json(&response.text().await.unwrap()),
        compact_json(VENDOR_EXAMPLE)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn defaults_give_the_first_fifteen_lines(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 20).await;
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(body["code"], 200);
    assert_eq!(body["status"], "success");
    assert_eq!(body["message"], "查看线路成功");
    assert_eq!(
        body["meta"],
        json!({"has_pages": true, "total": 20, "last_page": 2, "current_page": 1, "per_page": "15"})
    );
    assert_eq!(ids(&body), lines[..15]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ties_on_created_at_are_ordered_by_id(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let mut lines = Vec::new();
    for _ in 0..6 {
        lines.push(line(tenant, partner).insert(&pool).await);
    }
    let earlier = line(tenant, partner).nth(-1).insert(&pool).await;
    lines.sort();
    lines.insert(0, earlier);
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(ids(&body), lines);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn filters_select_by_user_and_allocation(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let alice = user(&pool, partner, "customer", "alice").await;
    let bob = user(&pool, partner, "sub_account", "bob").await;
    let a1 = line(tenant, partner).user(alice).nth(1).insert(&pool).await;
    let free1 = line(tenant, partner).nth(2).insert(&pool).await;
    let b1 = line(tenant, partner).user(bob).nth(3).insert(&pool).await;
    let a2 = line(tenant, partner).user(alice).nth(4).insert(&pool).await;
    let free2 = line(tenant, partner).nth(5).insert(&pool).await;
    let stranger_partner = crate::support::partner(&pool).await;
    let stranger = user(&pool, stranger_partner, "customer", "eve").await;
    line(tenant, stranger_partner)
        .user(stranger)
        .insert(&pool)
        .await;
    let app = TestApp::spawn(pool).await;
    let cases = [
        (format!("?user_id={alice}"), vec![a1, a2]),
        (format!("?user_id={bob}"), vec![b1]),
        ("?unused=true".into(), vec![free1, free2]),
        ("?unused=1".into(), vec![free1, free2]),
        ("?unused=false".into(), vec![a1, b1, a2]),
        ("?unused=0".into(), vec![a1, b1, a2]),
        (format!("?user_id={alice}&unused=false"), vec![a1, a2]),
        (format!("?user_id={alice}&unused=true"), vec![]),
        (format!("?user_id={}", Uuid::new_v4()), vec![]),
        // Another partner's user matches nothing, though that user has lines on this tenant.
        (format!("?user_id={stranger}"), vec![]),
        (format!("?user_id={}", alice.simple()), vec![a1, a2]),
    ];
    for (query, expected) in cases {
        let body = json(app.get_as(partner, &lines_path(tenant, &query)).await).await;
        assert_eq!(ids(&body), expected, "{query}");
        assert_eq!(body["meta"]["total"], expected.len(), "{query}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn only_the_partners_own_listed_lines_on_that_tenant_appear(pool: PgPool) {
    let tenant = tenant(&pool, "云节点一").await;
    let other_tenant = crate::support::tenant(&pool, "云节点二").await;
    let partner = partner(&pool).await;
    let other_partner = crate::support::partner(&pool).await;
    let listed = line(tenant, partner).insert(&pool).await;
    line(tenant, partner)
        .split_from(listed)
        .nth(1)
        .insert(&pool)
        .await;
    line(tenant, partner).deleted().nth(2).insert(&pool).await;
    line(other_tenant, partner).nth(3).insert(&pool).await;
    line(tenant, other_partner).nth(4).insert(&pool).await;
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(ids(&body), vec![listed]);
    assert_eq!(body["meta"]["total"], 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn times_render_as_beijing_wall_clock_across_midnight_and_new_year(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner)
        .created(Utc.with_ymd_and_hms(2023, 12, 31, 16, 0, 0).unwrap())
        .began(
            Utc.with_ymd_and_hms(2023, 12, 31, 15, 59, 59).unwrap(),
            86_400,
        )
        .deadline(Utc.with_ymd_and_hms(2024, 2, 28, 16, 30, 0).unwrap())
        .insert(&pool)
        .await;
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    let item = &body["data"][0];
    assert_eq!(item["created_at"], "2024-01-01 00:00:00");
    assert_eq!(item["updated_at"], "2024-01-01 00:00:00");
    assert_eq!(item["begin_at"], "2023-12-31 23:59:59");
    assert_eq!(item["available_at"], "2024-01-01 23:59:59");
    assert_eq!(item["deadline_at"], "2024-02-29 00:30:00");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_display_time_zone_is_configurable(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner)
        .created(Utc.with_ymd_and_hms(2023, 12, 31, 16, 0, 0).unwrap())
        .insert(&pool)
        .await;
    let app = TestApp::configured(pool, |settings| {
        settings.api.display_timezone = chrono_tz::UTC
    })
    .await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(body["data"][0]["created_at"], "2023-12-31 16:00:00");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn missing_values_are_null_and_types_match_the_vendor(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let sub_account = user(&pool, partner, "sub_account", "子").await;
    sqlx::query("update users set email = null, phone = null where id = $1")
        .bind(sub_account)
        .execute(&pool)
        .await
        .unwrap();
    line(tenant, partner).no_call_number().insert(&pool).await;
    line(tenant, partner)
        .user(sub_account)
        .nth(1)
        .insert(&pool)
        .await;
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    let unallocated = &body["data"][0];
    for key in [
        "user",
        "begin_at",
        "available_at",
        "deadline_at",
        "call_number",
        "qr_code",
        "description_server",
    ] {
        assert!(
            unallocated[key].is_null(),
            "{key} should be null: {unallocated}"
        );
    }
    assert_eq!(unallocated["available_time"], 0);
    assert_eq!(
        body["data"][1]["user"],
        json!({"name": "子", "email": null, "phone": null, "type_note": "子账户"})
    );
    assert_eq!(body["data"][1]["call_number"], "100");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_line_allocated_across_partners_never_shows_the_strangers_details(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let a = partner(&pool).await;
    let b = partner(&pool).await;
    let a_customer = user(&pool, a, "customer", "甲的客户").await;
    let b_line = line(tenant, b).insert(&pool).await;
    // Past the schema's keys (triggers off, as a careless restore may do): the list's own join
    // still refuses to show A's customer on B's line.
    let statement = format!("update caller_lines set user_id = $1::uuid where id = '{b_line}'");
    execute_unannounced(&pool, &statement, &a_customer.to_string()).await;
    let app = TestApp::spawn(pool).await;
    let body = json(app.get_as(b, &lines_path(tenant, "")).await).await;
    assert_eq!(ids(&body), [b_line]);
    assert_eq!(body["data"][0]["user"], serde_json::Value::Null, "{body}");
    assert!(!body.to_string().contains("甲的客户"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_value_the_schema_admits_renders(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let customer = user(&pool, partner, "customer", "").await;
    let earliest = "1970-01-01 00:00:00+00";
    let latest = "8999-12-31 23:59:59.999999+00";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "update users set email = '', phone = repeat('9', 1000) where id = '{customer}'; \
         insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, \
           call_number, call_line, available_time, begin_at, deadline_at, description_server, \
           created_at, updated_at) values \
         (gen_random_uuid(), '{tenant}', '{partner}', null, '', '', '', 0, 0, '{earliest}', \
          '{earliest}', '', '{earliest}', '{earliest}'), \
         (gen_random_uuid(), '{tenant}', '{partner}', '{customer}', \
          E'\"引号\" \\\\ \\n\\t\\u0001' || repeat('长', 2000), 'c', '0', 2147483647, \
          3155760000, '{latest}', '{latest}', E'\\u2028', '{latest}', '{latest}')"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool).await;
    let response = app.get_as(partner, &lines_path(tenant, "")).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    let [first, last] = [&body["data"][0], &body["data"][1]];
    assert_eq!(first["created_at"], "1970-01-01 08:00:00");
    assert_eq!(first["available_at"], "1970-01-01 08:00:00");
    assert_eq!(first["call_line"], 0);
    assert_eq!(last["call_line"], 2_147_483_647_i64);
    assert_eq!(last["available_time"], 3_155_760_000_i64);
    assert_eq!(last["deadline_at"], "9000-01-01 07:59:59");
    // 3,155,760,000 s (36,525 days) after the latest start the schema admits; the 91st
    // century has 24 leap days, so one day more than a calendar century.
    assert_eq!(last["available_at"], "9100-01-02 07:59:59");
    assert_eq!(last["user"]["email"], "");
    for field in [
        "created_at",
        "updated_at",
        "begin_at",
        "deadline_at",
        "available_at",
    ] {
        let shown = last[field].as_str().unwrap();
        assert_eq!(shown.len(), "YYYY-MM-DD HH:MM:SS".len(), "{field}: {shown}");
    }
}
