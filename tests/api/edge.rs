//! The HTTPS edge and hostile clients (SPEC §4–5): TLS in process, and no oversized or slow
//! client can hang a connection.

use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::helpers::*;

const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends raw bytes and reads until the server answers or closes; fails on a hang.
async fn raw_exchange(port: u16, request: &[u8]) -> Vec<u8> {
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
async fn https_serves_the_same_envelopes_and_refuses_plain_http(pool: PgPool) {
    let partner = partner(&pool).await;
    let tenant = tenant(&pool, "云节点").await;
    line(tenant, partner).insert(&pool).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("agent-api-tls-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let app = TestApp::configured(pool, |s| {
        s.tls.cert_path = Some(cert_path.clone());
        s.tls.key_path = Some(key_path.clone());
    })
    .await;
    let port = port_of(&app);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/agent-api/tenant/{tenant}/callerline");
    let token = app.token_for(partner);
    let ok = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.version(), reqwest::Version::HTTP_11);
    assert_eq!(json(ok).await["meta"]["total"], 1);
    let anonymous = client.get(&url).send().await.unwrap();
    assert_error(anonymous, 401, 401).await;

    // Plain HTTP on the TLS port: refused or closed, promptly.
    let answer = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // And the server still serves afterwards.
    let again = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    std::fs::remove_dir_all(dir).unwrap();
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
