//! Tokens minted elsewhere (SPEC §4): keys selected by `kid` so they rotate, `iss` and `aud`
//! checked when configured (`aud` as a string or an array, RFC 7519 §4.1.3), and a `crit` header
//! this server does not understand refused (RFC 7515 §4.1.11).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sqlx::PgPool;

use crate::auth::{assert_rejected, claims, hs256, listed, pem, sign, with_kid, with_public_keys};
use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn issuer_and_audience_are_checked_when_configured(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::configured(pool, |s| {
        s.auth.issuer = Some("portal".into());
        s.auth.audience = Some("agent-api".into());
    })
    .await;
    let with = |iss: Option<&str>, aud: Option<&str>| {
        let mut claims = claims(partner);
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        format!("Bearer {}", hs256(&claims))
    };
    for (case, token) in [
        ("wrong iss", with(Some("elsewhere"), Some("agent-api"))),
        ("wrong aud", with(Some("portal"), Some("other"))),
        ("missing iss", with(None, Some("agent-api"))),
        ("missing aud", with(Some("portal"), None)),
    ] {
        assert_rejected(&app, &path, Some(&token), case).await;
    }
    let good = app
        .request(&path, Some(&with(Some("portal"), Some("agent-api"))))
        .await;
    assert_eq!(good.status(), 200);
    // token issue stamps the configured issuer and audience.
    assert_eq!(app.get_as(partner, &path).await.status(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn external_issuers_keys_are_selected_by_kid_so_keys_rotate(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::configured(pool, with_public_keys).await;
    let signed = [
        (
            "rsa",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap(),
        ),
        (
            "ec",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("ec.pem")).unwrap(),
        ),
        (
            "ed",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem("ed25519.pem")).unwrap(),
        ),
    ];
    for (kid, algorithm, key) in &signed {
        let token = sign(with_kid(*algorithm, kid), &claims(partner), key);
        let response = app.request(&path, Some(&format!("Bearer {token}"))).await;
        assert_eq!(response.status(), 200, "{kid}");
        // The same token under another live key's kid does not verify.
        let swapped = sign(
            with_kid(*algorithm, if *kid == "ed" { "rsa" } else { "ed" }),
            &claims(partner),
            key,
        );
        assert_rejected(&app, &path, Some(&format!("Bearer {swapped}")), kid).await;
    }
    // Tokens without a kid still use the HS256 secret while public keys are configured.
    assert_eq!(
        app.request(&path, Some(&format!("Bearer {}", hs256(&claims(partner)))))
            .await
            .status(),
        200
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_audience_array_is_accepted_when_it_names_this_api(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::configured(pool, |s| s.auth.audience = Some("agent-api".into())).await;
    let with_audience = |aud: serde_json::Value| {
        let mut claims = claims(partner);
        claims["aud"] = aud;
        format!("Bearer {}", hs256(&claims))
    };
    for aud in [
        json!("agent-api"),
        json!(["agent-api"]),
        json!(["portal", "agent-api"]),
    ] {
        let response = app.request(&path, Some(&with_audience(aud.clone()))).await;
        assert_eq!(response.status(), 200, "aud {aud}");
    }
    for aud in [json!(["portal"]), json!([]), json!("portal")] {
        assert_rejected(
            &app,
            &path,
            Some(&with_audience(aud.clone())),
            &aud.to_string(),
        )
        .await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_critical_extension_this_server_does_not_understand_is_refused(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::spawn(pool).await;
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-v2".into()]);
    header.extras.insert("exp-v2", json!(1));
    let token = sign(
        header,
        &claims(partner),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_rejected(&app, &path, Some(&format!("Bearer {token}")), "crit").await;
    // The same token without the header parameter is fine.
    let plain = sign(
        Header::new(Algorithm::HS256),
        &claims(partner),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_eq!(
        app.request(&path, Some(&format!("Bearer {plain}")))
            .await
            .status(),
        200
    );
}
