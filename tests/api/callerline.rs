//! GET /agent-api/tenant/{id}/callerline (SPEC §2), through real HTTP on a fresh database.

use agent_api::store::demo;
use chrono::{TimeZone, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

const FIXTURE: &str = include_str!("../fixtures/callerline_page1_per2.json");
const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn lines_path(tenant: Uuid, query: &str) -> String {
    format!("/agent-api/tenant/{tenant}/callerline{query}")
}

/// A partner with `count` lines on a fresh tenant, created one second apart.
async fn partner_with_lines(pool: &PgPool, count: i64) -> (Uuid, Uuid, Vec<Uuid>) {
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
        compact_json(FIXTURE)
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
async fn pagination_edges_have_correct_meta_and_items(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 5).await;
    let (empty_tenant, _, _) = partner_with_lines(&pool, 0).await;
    let app = TestApp::spawn(pool).await;
    // (tenant, query, expected items, has_pages, total, last_page, current_page, per_page)
    let cases = [
        (empty_tenant, "", vec![], false, 0, 1, 1, "15"),
        (tenant, "?per_page=5", lines.clone(), false, 5, 1, 1, "5"),
        (
            tenant,
            "?per_page=2&page=1",
            lines[..2].to_vec(),
            true,
            5,
            3,
            1,
            "2",
        ),
        (
            tenant,
            "?per_page=2&page=3",
            lines[4..].to_vec(),
            true,
            5,
            3,
            3,
            "2",
        ),
        (tenant, "?per_page=2&page=4", vec![], true, 5, 3, 4, "2"),
        (empty_tenant, "?page=2", vec![], true, 0, 1, 2, "15"),
        (
            tenant,
            "?page=9223372036854775807",
            vec![],
            true,
            5,
            1,
            i64::MAX,
            "15",
        ),
        (
            tenant,
            "?page=9223372036854775807&per_page=100",
            vec![],
            true,
            5,
            1,
            i64::MAX,
            "100",
        ),
    ];
    for (tenant, query, items, has_pages, total, last_page, current_page, per_page) in cases {
        let response = app.get_as(partner, &lines_path(tenant, query)).await;
        assert_eq!(response.status(), 200, "{query}");
        let body = json(response).await;
        assert_eq!(ids(&body), items, "{query}");
        assert_eq!(
            body["meta"],
            json!({"has_pages": has_pages, "total": total, "last_page": last_page,
                   "current_page": current_page, "per_page": per_page}),
            "{query}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn query_string_rules_empty_last_wins_unknown_ignored(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 4).await;
    let app = TestApp::spawn(pool).await;
    let cases = [
        ("?page=&per_page=", lines.clone()),
        ("?per_page=1&per_page=2", lines[..2].to_vec()),
        ("?per_page=x&per_page=2&page=2", lines[2..].to_vec()),
        ("?per_page=2&page=2&page=", lines[..2].to_vec()),
        ("?foo=bar&per_page=3&Page=9", lines[..3].to_vec()),
    ];
    for (query, expected) in cases {
        let body = json(app.get_as(partner, &lines_path(tenant, query)).await).await;
        assert_eq!(body["code"], 200, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
    }
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
    let stranger_partner = super::helpers::partner(&pool).await;
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
    let other_tenant = super::helpers::tenant(&pool, "云节点二").await;
    let partner = partner(&pool).await;
    let other_partner = super::helpers::partner(&pool).await;
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
async fn rule_breaking_parameters_answer_1001_naming_the_parameter(pool: PgPool) {
    let (tenant, partner, _) = partner_with_lines(&pool, 1).await;
    let app = TestApp::spawn(pool).await;
    let cases = [
        ("page=0", "page"),
        ("page=-3", "page"),
        ("page=abc", "page"),
        ("page=9223372036854775808", "page"),
        ("page=1.0", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("per_page=%F0%9F%98%80", "per_page"),
        ("user_id=not-a-uuid", "user_id"),
        ("unused=yes", "unused"),
        ("unused=%00", "unused"),
    ];
    for (query, name) in cases {
        let response = app
            .get_as(partner, &lines_path(tenant, &format!("?{query}")))
            .await;
        let message = assert_error(response, 200, 1001).await;
        assert!(message.starts_with("参数错误"), "{query}: {message}");
        assert!(
            message.contains(name),
            "{query}: {message} should name {name}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_page_size_limit_is_configurable(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 3).await;
    let app = TestApp::configured(pool, |settings| {
        settings.api.max_per_page = 2;
        settings.api.default_per_page = 1;
    })
    .await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(ids(&body), lines[..1]);
    assert_eq!(body["meta"]["per_page"], "1");
    let message = assert_error(
        app.get_as(partner, &lines_path(tenant, "?per_page=3"))
            .await,
        200,
        1001,
    )
    .await;
    assert!(message.contains("1 到 2"), "{message}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missing_deleted_or_malformed_tenant_is_1004(pool: PgPool) {
    let (tenant, partner, _) = partner_with_lines(&pool, 1).await;
    soft_delete_tenant(&pool, tenant).await;
    let app = TestApp::spawn(pool).await;
    for path in [
        lines_path(tenant, ""),
        lines_path(Uuid::new_v4(), ""),
        "/agent-api/tenant/not-a-uuid/callerline".to_string(),
        "/agent-api/tenant/%E4%BA%91/callerline?page=2".to_string(),
    ] {
        let message = assert_error(app.get_as(partner, &path).await, 200, 1004).await;
        assert_eq!(message, "云节点不存在", "{path}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn errors_come_in_the_specified_order(pool: PgPool) {
    let (tenant, partner, _) = partner_with_lines(&pool, 1).await;
    let deleted = super::helpers::partner(&pool).await;
    soft_delete_user(&pool, deleted).await;
    let app = TestApp::spawn(pool).await;
    let missing = "/agent-api/tenant/nope/callerline";
    // 401 before 1001 and 1004, even for a well-signed token of a deleted partner.
    assert_error(app.get(&format!("{missing}?page=0")).await, 401, 401).await;
    assert_error(
        app.get_as(deleted, &format!("{missing}?page=0")).await,
        401,
        401,
    )
    .await;
    assert_error(app.get_as(deleted, &lines_path(tenant, "")).await, 401, 401).await;
    // 1001 before 1004.
    assert_error(
        app.get_as(partner, &format!("{missing}?page=0")).await,
        200,
        1001,
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_paths_and_methods_answer_enveloped_404_and_405(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for path in [
        "/agent-api/nothing",
        "/agent-api/tenant/x/callerline/extra",
        "/elsewhere",
    ] {
        let message = assert_error(app.get(path).await, 404, 404).await;
        assert_eq!(message, "接口不存在");
    }
    let url = format!(
        "{}/agent-api/tenant/{}/callerline",
        app.address,
        Uuid::new_v4()
    );
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let response = app
            .client()
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET", "{method}");
        let message = assert_error(response, 405, 405).await;
        assert_eq!(message, "请求方法不允许");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_query_string_yields_a_5xx_or_a_bare_body(pool: PgPool) {
    let (tenant, partner, _) = partner_with_lines(&pool, 3).await;
    let app = TestApp::spawn(pool).await;
    let token = format!("Bearer {}", app.token_for(partner));
    let pair = proptest::prop_oneof![
        proptest::string::string_regex("(page|per_page|user_id|unused|x)=[-0-9a-f%+&=.]{0,40}")
            .unwrap(),
        proptest::string::string_regex("[ -~]{0,60}").unwrap(),
    ];
    let mut runner = TestRunner::deterministic();
    for _ in 0..150 {
        let raw = pair.new_tree(&mut runner).unwrap().current();
        // Percent-encode what a URL cannot carry, keeping `&`, `=` and `%` as the fuzz wrote them.
        let query: String = raw
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '&' | '=' | '%' | '-' | '.' | '_' | '+' => {
                    c.to_string()
                }
                other => format!("%{:02X}", other as u32),
            })
            .collect();
        let response = app
            .request(&lines_path(tenant, &format!("?{query}")), Some(&token))
            .await;
        assert_eq!(response.status(), 200, "{query}");
        let body = json(response).await;
        let code = body["code"].as_i64().unwrap();
        assert!(code == 200 || code == 1001, "{query}: {body}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_page_read_in_turn_is_the_whole_list_in_order(pool: PgPool) {
    // Pages past the middle are read from the far end of the index: both ways must agree.
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let alice = user(&pool, partner, "customer", "alice").await;
    for n in 0..23_i64 {
        // Ties on created_at in threes, so the id tiebreak is exercised in both directions.
        let new_line = line(tenant, partner).nth(n - n % 3);
        let new_line = if n % 2 == 0 {
            new_line.user(alice)
        } else {
            new_line
        };
        new_line.insert(&pool).await;
    }
    let expected: Vec<(Uuid, bool)> = sqlx::query_as(
        "select id, user_id is not null from caller_lines where partner_id = $1 \
         order by created_at, id",
    )
    .bind(partner)
    .fetch_all(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool).await;
    // (filter, which lines it keeps: Some(allocated) or None for all)
    let filters = [
        (String::new(), None),
        ("&unused=1".to_string(), Some(false)),
        ("&unused=0".to_string(), Some(true)),
        (format!("&user_id={alice}"), Some(true)),
    ];
    for (filter, keeps) in filters {
        let wanted: Vec<Uuid> = expected
            .iter()
            .filter(|(_, allocated)| keeps.is_none_or(|kept| kept == *allocated))
            .map(|(id, _)| *id)
            .collect();
        for per_page in 1..=7_usize {
            let last_page = wanted.len().div_ceil(per_page).max(1);
            let mut read = Vec::new();
            for page in 1..=last_page + 1 {
                let query = format!("?per_page={per_page}&page={page}{filter}");
                let body = json(app.get_as(partner, &lines_path(tenant, &query)).await).await;
                assert_eq!(body["meta"]["total"], wanted.len(), "{query}");
                assert_eq!(body["meta"]["last_page"], last_page, "{query}");
                let items = ids(&body);
                if page > last_page {
                    assert!(items.is_empty(), "{query}: past the end");
                }
                read.extend(items);
            }
            assert_eq!(read, wanted, "per_page={per_page}{filter}");
        }
    }
}
