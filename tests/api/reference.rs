//! The partner's reference: the OpenAPI document at /openapi.json, its examples checked against
//! what the server answers, and the offline /docs page (SPEC §5).

use std::io::Read;

use agent_api::config::LegacyMode;
use agent_api::store::demo;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

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
async fn reference_assets_carry_a_strong_tag_per_coding_and_are_cached_by_clients(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let url = format!("{}/docs/swagger-ui-bundle.js", app.address);
    let fetch = |encoding: &'static str, if_none_match: Option<String>| {
        let mut request = app.client().get(&url).header("Accept-Encoding", encoding);
        if let Some(tag) = if_none_match {
            request = request.header("If-None-Match", tag);
        }
        request.send()
    };
    let plain = fetch("identity", None).await.unwrap();
    assert_eq!(plain.headers()["cache-control"], "public, max-age=86400");
    let plain_tag = plain.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        !plain_tag.starts_with("W/"),
        "a strong validator: {plain_tag}"
    );
    let plain = plain.bytes().await.unwrap();
    let mut tags = vec![plain_tag];
    for _ in 0..2 {
        let compressed = fetch("br", None).await.unwrap();
        assert_eq!(compressed.headers()["content-encoding"], "br");
        let tag = compressed.headers()["etag"].to_str().unwrap().to_string();
        let mut decoded = Vec::new();
        brotli_decompressor::Decompressor::new(&compressed.bytes().await.unwrap()[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain);
        tags.push(tag);
    }
    assert_ne!(tags[0], tags[1], "each coding has its own strong tag");
    assert_eq!(tags[1], tags[2], "one tag for one representation");
    let revalidated = fetch("br", Some(tags[1].clone())).await.unwrap();
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().await.unwrap().is_empty());
    // What names the document is revalidated on every use.
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(initializer.headers()["cache-control"], "public, no-cache");
    let document = app.get("/openapi.json").await;
    assert_eq!(document.headers()["cache-control"], "public, no-cache");
}
