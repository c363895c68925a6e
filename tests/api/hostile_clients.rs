//! Clients that misbehave: an oversized or unfinished request is refused or cut off, never left
//! hanging.

use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
