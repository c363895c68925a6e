//! The errors of the lists (SPEC §2): 1001 naming the parameter, 1004, their order behind 401,
//! the enveloped 404 and 405, and no query string that escapes the envelope.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::PgPool;
use uuid::Uuid;

use crate::caller_lines::{lines_path, partner_with_lines};
use crate::support::*;

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
    let deleted = crate::support::partner(&pool).await;
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
        assert_eq!(response.headers()["allow"], "GET, HEAD", "{method}");
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
