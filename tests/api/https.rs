//! HTTPS in process (SPEC §5): the same envelopes over TLS, and plain HTTP refused promptly.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::hostile_clients::{port_of, raw_exchange};
use crate::support::*;

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
