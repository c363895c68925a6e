//! Clients that misbehave: an oversized, unfinished or trickled request is refused or cut off,
//! never left hanging; what strangers send costs bounded memory and log.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process;
use crate::support::*;

pub fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends raw bytes and reads until the server answers or closes; fails on a hang.
pub async fn raw_exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The server may close mid-write once it has seen enough; that is a fine answer.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed within 10 s"
    );
    answer
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_oversized_header_is_refused_not_hung(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 512 * 1024));
    request.extend(b"\r\n\r\n");
    let answer = String::from_utf8_lossy(&raw_exchange(port_of(&app), &request).await).to_string();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a 4xx or a closed connection, not: {answer:.200}"
    );
    assert_eq!(app.get("/healthz").await.status(), 200, "still serving");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_client_that_never_finishes_its_request_is_cut_off(pool: PgPool) {
    let app = TestApp::configured(pool, |s| s.server.client_request_timeout_ms = 500).await;
    let started = std::time::Instant::now();
    // Half a request head, then silence.
    let answer = raw_exchange(port_of(&app), b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off after the configured 500 ms, well before actix\'s own 5 s default"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_body_trickled_in_is_answered_and_its_connection_closed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(&app)))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /agent-api/tenant HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\nabcdef\r\n",
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Six more bytes every half second, for as long as the server will take them.
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b"6\r\nabcdef\r\n").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(closed.is_ok(), "the connection is still open after 5 s");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer:.300}");
    assert!(answer.contains("connection: close"), "{answer:.300}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn head_requests_and_refused_codings_get_what_get_does(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    line(tenant, partner).insert(&pool).await;
    let app = TestApp::spawn(pool).await;
    let url = format!("{}/agent-api/tenant/{tenant}/callerline", app.address);
    let token = format!("Bearer {}", app.token_for(partner));
    let head = |authorization: Option<&str>| {
        let mut request = app.client().head(&url);
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send()
    };
    let anonymous = head(None).await.unwrap();
    assert_eq!(anonymous.status(), 401, "not 405");
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert!(anonymous.bytes().await.unwrap().is_empty());
    let served = head(Some(&token)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert!(served.headers().contains_key("etag"));
    assert!(served.bytes().await.unwrap().is_empty());

    // A client that refuses every coding gets the envelope as it is, not a bare 406.
    let refusing = |authorization: Option<&str>| {
        let mut request = app
            .client()
            .get(&url)
            .header("Accept-Encoding", "identity;q=0, *;q=0");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send()
    };
    assert_error(refusing(None).await.unwrap(), 401, 401).await;
    let listed = refusing(Some(&token)).await.unwrap();
    assert!(!listed.headers().contains_key("content-encoding"));
    assert_eq!(json(listed).await["code"], 200);
}

/// Bytes `serving` logs while `requests` are sent, once its log has gone quiet.
async fn logged_during(
    serving: &process::Serving,
    requests: impl std::future::Future<Output = ()>,
) -> usize {
    let before = serving.logged_bytes();
    requests.await;
    let mut seen = serving.logged_bytes();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = serving.logged_bytes();
        if now == seen {
            return now - before;
        }
        seen = now;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refused_requests_write_little_to_the_log(pool: PgPool) {
    let serving = process::spawn_serve(
        &roles::reader_url(&pool).await,
        &[("APP__LOG__LEVEL", "info")],
    );
    let client = reqwest::Client::new();
    let url = serving.url(&format!(
        "/agent-api/tenant/{}/callerline",
        uuid::Uuid::new_v4()
    ));
    // A token naming a key id of 8 KB, and no token at all.
    let header =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(8192)));
    let long_kid = format!("Bearer {header}.e30.c2ln");
    let refused = 2_000;
    let written = logged_during(&serving, async {
        for n in 0..refused {
            let mut request = client.get(&url);
            if n % 2 == 0 {
                request = request.header("Authorization", &long_kid);
            }
            assert_eq!(request.send().await.unwrap().status(), 401);
        }
    })
    .await;
    assert!(
        written / refused < 200,
        "{written} bytes logged for {refused} refused requests"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn kept_pages_cost_no_more_memory_than_their_bound(pool: PgPool) {
    const BOUND: usize = 2 << 20;
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let customer = user(&pool, partner, "customer", "客户").await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, \
         call_line, created_at) select gen_random_uuid(), '{tenant}', '{partner}', \
         case when n % 2 = 0 then '{customer}'::uuid end, 'l' || n, 'c', 1, \
         '2024-01-01'::timestamptz + n * interval '1 s' from generate_series(1, 3000) n"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let bound = BOUND.to_string();
    let serving = process::spawn_serve(
        &database_url(&pool),
        &[
            ("APP__LISTING_CACHE__MAX_BYTES", &bound),
            ("APP__LISTING_CACHE__MAX_PARTNER_SHARE", "1"),
        ],
    );
    let token = format!(
        "Bearer {}",
        agent_api::tokens::KeyRing::from_settings(&test_settings().auth)
            .unwrap()
            .issue(partner, Duration::from_secs(600), None, chrono::Utc::now())
            .unwrap()
    );
    let client = reqwest::Client::new();
    let fetch = |query: String| {
        let request = client
            .get(serving.url(&format!("/agent-api/tenant/{tenant}/callerline?{query}")))
            .header("Authorization", &token);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    // The smallest pages there are, one line each: the most entries a bound holds.
    let pages: Vec<String> = ["", "&unused=1", "&unused=0"]
        .iter()
        .flat_map(|filter| (1..=3000).map(move |page| format!("per_page=1&page={page}{filter}")))
        .collect();
    // Warm up on pages past the last, which are never kept, so buffers and pools exist.
    for n in 0..200 {
        fetch(format!("per_page=1&page={}", 10_000 + n)).await;
    }
    let before = resident_bytes(&serving);
    for chunk in pages.chunks(8) {
        futures_util::future::join_all(chunk.iter().cloned().map(fetch)).await;
    }
    let grown = resident_bytes(&serving).saturating_sub(before);
    assert!(
        grown <= BOUND * 3 / 2,
        "RSS grew by {grown} bytes for a bound of {BOUND}"
    );
}

fn resident_bytes(serving: &process::Serving) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", serving.child.id())).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kib * 1024
}

/// Strangers' answers (unknown paths, wrong methods, the reference's files) and requests the
/// HTTP layer cannot even read are written within one budget: a flood adds little to the log.
#[sqlx::test(migrator = "MIGRATOR")]
async fn strangers_requests_write_little_to_the_log(pool: PgPool) {
    let serving = process::spawn_serve(
        &roles::reader_url(&pool).await,
        &[("APP__LOG__LEVEL", "info")],
    );
    let client = reqwest::Client::new();
    let sent = 20_000;
    let written = logged_during(&serving, async {
        let requests = (0..sent).map(|n| {
            let request = match n % 4 {
                0 => client.get(serving.url(&format!("/nope/{n}"))),
                1 => client.post(serving.url("/agent-api/tenant")),
                2 => client.get(serving.url("/docs/index.css")),
                _ => client.get(serving.url(&format!("/agent-api/x{n}"))),
            };
            async move { request.send().await.unwrap().status() }
        });
        let statuses: Vec<_> = futures_util::stream::iter(requests)
            .buffer_unordered(32)
            .collect()
            .await;
        assert_eq!(statuses.len(), sent);
    })
    .await;
    assert!(
        written < 300 * 1024,
        "{written} bytes logged for {sent} requests"
    );
    // Heads that are not HTTP at all: actix's own line for each is within the budget too.
    let unreadable = logged_during(&serving, async {
        for _ in 0..2_000 {
            raw_exchange(serving.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
        }
    })
    .await;
    assert!(
        unreadable < 100 * 1024,
        "{unreadable} bytes logged for 2,000 unreadable heads"
    );
    println!(
        "logged: {written} bytes for {sent} strangers' requests, {unreadable} for 2,000 unreadable heads"
    );
}
