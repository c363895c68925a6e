//! What HTTP caching and compression give partners that poll: gzip and brotli bodies, and a weak
//! ETag that answers 304 while a page is unchanged.

use std::io::Read;

use agent_api::store::demo;
use sqlx::PgPool;

use crate::support::*;

fn demo_lines(query: &str) -> String {
    format!(
        "/agent-api/tenant/{}/callerline{query}",
        demo::DEMO_TENANT_ID
    )
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

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_answer_is_private_and_only_success_bodies_are_tagged(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::spawn(pool).await;
    let partner = demo::DEMO_PARTNER_ID;
    let missing_tenant = format!("/agent-api/tenant/{}/callerline", uuid::Uuid::new_v4());
    // (path, partner's token?, code, tagged?)
    let cases = [
        (demo_lines(""), true, 200, true),
        ("/agent-api/tenant".to_string(), true, 200, true),
        (demo_lines("?page=0"), true, 1001, false),
        (
            "/agent-api/tenant?per_page=0".to_string(),
            true,
            1001,
            false,
        ),
        (missing_tenant, true, 1004, false),
        (demo_lines(""), false, 401, false),
    ];
    for (path, authenticated, code, tagged) in cases {
        let response = match authenticated {
            true => app.get_as(partner, &path).await,
            false => app.get(&path).await,
        };
        assert_eq!(
            response.headers()["cache-control"],
            "private, no-cache",
            "{path}"
        );
        assert_eq!(response.headers().contains_key("etag"), tagged, "{path}");
        assert_eq!(json(response).await["code"], code, "{path}");
    }
}
