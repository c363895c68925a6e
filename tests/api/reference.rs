//! The partner's reference (OpenAPI and /docs), compression, conditional GETs and the
//! operator's SQL in README (SPEC §5).

use std::io::Read;

use agent_api::config::LegacyMode;
use agent_api::store::demo;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn demo_lines(query: &str) -> String {
    format!(
        "/agent-api/tenant/{}/callerline{query}",
        demo::DEMO_TENANT_ID
    )
}

fn examples<'a>(
    document: &'a Value,
    path: &str,
    status: &str,
) -> &'a serde_json::Map<String, Value> {
    document["paths"][path]["get"]["responses"][status]["content"]["application/json"]["examples"]
        .as_object()
        .unwrap_or_else(|| panic!("{path} {status} has examples"))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn openapi_json_is_the_document_built_from_the_code(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let served = json(app.get("/openapi.json").await).await;
    let settings = test_settings();
    let built =
        agent_api::http::openapi::document(settings.api.page_limits(), settings.legacy.sunset_at);
    assert_eq!(served, serde_json::to_value(built).unwrap());
    assert_eq!(served["openapi"], "3.1.0");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_documented_example_is_what_the_server_answers(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::spawn(pool.clone()).await;
    let document = json(app.get("/openapi.json").await).await;
    let partner = demo::DEMO_PARTNER_ID;
    let lines = examples(&document, "/agent-api/tenant/{id}/callerline", "200");
    let cases = [
        ("1_success", demo_lines("?page=1&per_page=2")),
        ("2_bad_page", demo_lines("?page=0")),
        ("3_bad_user_id", demo_lines("?user_id=42")),
        (
            "4_no_tenant",
            format!("/agent-api/tenant/{}/callerline", Uuid::new_v4()),
        ),
    ];
    assert_eq!(lines.len(), cases.len(), "every example is checked");
    for (name, path) in cases {
        let answered = json(app.get_as(partner, &path).await).await;
        assert_eq!(answered, lines[name]["value"], "{name}");
    }
    let tenants = examples(&document, "/agent-api/tenant", "200");
    assert_eq!(
        json(app.get_as(partner, "/agent-api/tenant").await).await,
        tenants["1_success"]["value"]
    );
    assert_eq!(
        json(app.get_as(partner, "/agent-api/tenant?page=0").await).await,
        tenants["2_bad_page"]["value"]
    );
    let unauthorized = examples(&document, "/agent-api/tenant/{id}/callerline", "401");
    assert_eq!(
        json(app.get(&demo_lines("")).await).await,
        unauthorized["error"]["value"]
    );

    for (component, path) in [("NotFound", "/agent-api/nothing"), ("MethodNotAllowed", "")] {
        let example = &document["components"]["responses"][component]["content"]["application/json"]
            ["examples"]["error"]["value"];
        let answered = if path.is_empty() {
            let url = format!("{}{}", app.address, demo_lines(""));
            json(app.client().post(url).send().await.unwrap()).await
        } else {
            json(app.get(path).await).await
        };
        assert_eq!(&answered, example, "{component}");
    }

    let gone = TestApp::configured(pool, |s| s.legacy.callerline = LegacyMode::Off).await;
    let retired = examples(&document, "/agent-api/callerline", "410");
    assert_eq!(
        json(gone.get_as(partner, "/agent-api/callerline").await).await,
        retired["error"]["value"]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_reference_page_is_served_from_the_binary(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = no_redirects
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert!(bare.status().is_redirection());
    assert_eq!(bare.headers()["location"], "/docs/");
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html:.300}");
    assert!(!html.contains("https://"), "no asset from elsewhere");
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn gzip_and_brotli_bodies_decode_to_the_same_json(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::spawn(pool).await;
    let token = format!("Bearer {}", app.token_for(demo::DEMO_PARTNER_ID));
    let fetch = |encoding: &'static str| {
        let request = app
            .client()
            .get(format!("{}{}", app.address, demo_lines("?per_page=5")))
            .header("Authorization", &token)
            .header("Accept-Encoding", encoding);
        async move { request.send().await.unwrap() }
    };
    let plain = fetch("identity").await;
    let tag = plain.headers()["etag"].clone();
    let plain = plain.bytes().await.unwrap();
    let gzipped = fetch("gzip").await;
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "accept-encoding");
    assert_eq!(
        gzipped.headers()["etag"],
        tag,
        "one tag for the page, however encoded"
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gzipped.bytes().await.unwrap()[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, plain);
    let brotli = fetch("br").await;
    assert_eq!(brotli.headers()["content-encoding"], "br");
    assert_eq!(brotli.headers()["etag"], tag);
    let compressed = brotli.bytes().await.unwrap();
    let mut decoded = Vec::new();
    brotli_decompressor::Decompressor::new(&compressed[..], 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, plain);
    assert!(compressed.len() < plain.len());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_matching_etag_gets_304_and_a_change_changes_the_etag(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::spawn(pool.clone()).await;
    let token = format!("Bearer {}", app.token_for(demo::DEMO_PARTNER_ID));
    let url = format!("{}{}", app.address, demo_lines(""));
    let get = |if_none_match: Option<String>| {
        let mut request = app.client().get(&url).header("Authorization", &token);
        if let Some(tag) = if_none_match {
            request = request.header("If-None-Match", tag);
        }
        async move { request.send().await.unwrap() }
    };
    let first = get(None).await;
    let tag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(tag.starts_with("W/\""), "{tag}");
    let unchanged = get(Some(tag.clone())).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"], tag.as_str());
    assert!(unchanged.bytes().await.unwrap().is_empty());

    sqlx::query(
        "update caller_lines set name = '改名' where id = '7aa839fb-4b04-40f3-ab16-0da39aeacf76'",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The service hears of the change asynchronously (its listing cache), within milliseconds.
    eventually("the changed page is sent", || async {
        get(Some(tag.clone())).await.status() != 304
    })
    .await;
    let changed = get(Some(tag.clone())).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], tag.as_str());
    assert_eq!(json(changed).await["data"][0]["name"], "改名");
}

/// The ```sql blocks of README.md, with psql's `:'name'` and `:name` variables filled in.
fn readme_sql(values: &[(&str, String)]) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
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
        .into_iter()
        .map(|mut block| {
            for (name, value) in values {
                block = block.replace(&format!(":'{name}'"), &format!("'{value}'"));
                block = block.replace(&format!(":{name}"), value);
            }
            assert!(
                !block.contains(":'"),
                "an unfilled psql variable in:\n{block}"
            );
            block
        })
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_operator_sql_in_the_readme_runs(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let line = "a1b93390-3e6e-4bc4-b23b-5693484fd0f7";
    let values = [
        ("partner", demo::DEMO_PARTNER_ID.to_string()),
        ("user", "00000000-0000-0000-0000-000000000002".to_string()),
        ("line", line.to_string()),
        ("name", "运营测试".to_string()),
        ("email", "ops@example.com".to_string()),
        ("phone", "13900000000".to_string()),
        ("issued_at", "2030-01-01T00:00:00Z".to_string()),
        ("days", "36500".to_string()),
    ];
    let blocks = readme_sql(&values);
    assert!(blocks.len() >= 2, "README has its SQL blocks");
    for block in blocks {
        sqlx::raw_sql(sqlx::AssertSqlSafe(block.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("README SQL failed: {e}\n{block}"));
    }
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
