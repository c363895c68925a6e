//! Authentication and partner isolation (SPEC §4): every rejection is the same 401 envelope
//! with `WWW-Authenticate: Bearer`, whatever its cause.

use agent_api::config::{KeySettings, PublicKeySettings, Settings};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

pub fn key_path(file: &str) -> String {
    format!("{}/tests/fixtures/keys/{file}", env!("CARGO_MANIFEST_DIR"))
}

pub fn pem(file: &str) -> Vec<u8> {
    std::fs::read(key_path(file)).unwrap()
}

/// The HS256 secret plus an RS256, an ES256 and an EdDSA public key, by kid.
pub fn with_public_keys(settings: &mut Settings) {
    let public = |kid: &str, file| PublicKeySettings {
        kid: kid.into(),
        public_key: key_path(file),
        private_key: None,
    };
    settings.auth.keys.extend([
        KeySettings::RS256(public("rsa", "rsa.pub.pem")),
        KeySettings::ES256(public("ec", "ec.pub.pem")),
        KeySettings::EdDSA(public("ed", "ed25519.pub.pem")),
    ]);
}

pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// Claims valid for an hour from now.
pub fn claims(partner: Uuid) -> Value {
    json!({"sub": partner.to_string(), "iat": now(), "exp": now() + 3600})
}

pub fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

pub fn with_kid(algorithm: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    header
}

pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// One listed line for `partner` on a fresh tenant; returns the list path.
pub async fn listed(pool: &PgPool, partner: Uuid) -> String {
    let tenant = tenant(pool, "云节点").await;
    line(tenant, partner).insert(pool).await;
    format!("/agent-api/tenant/{tenant}/callerline")
}

pub async fn assert_rejected(app: &TestApp, path: &str, authorization: Option<&str>, case: &str) {
    let response = app.request(path, authorization).await;
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
    let body = response.text().await.unwrap();
    assert_eq!(
        body, r#"{"code":401,"status":"error","message":"鉴权失败","data":[]}"#,
        "{case}: the same body whatever the cause"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_bad_token_is_the_same_401(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let customer = user(&pool, partner, "customer", "客户").await;
    let deleted = crate::support::partner(&pool).await;
    let revoked = crate::support::partner(&pool).await;
    soft_delete_user(&pool, deleted).await;
    sqlx::query("update users set tokens_valid_after = now() where id = $1")
        .bind(revoked)
        .execute(&pool)
        .await
        .unwrap();
    let app = TestApp::configured(pool, with_public_keys).await;

    let rsa_public_as_secret = {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa"});
        let message = format!("{}.{}", b64(&header), b64(&claims(partner)));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(&pem("rsa.pub.pem")),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(partner))
    );
    let leeway = 30;
    let mut expired = claims(partner);
    expired["exp"] = json!(now() - leeway - 60);
    let mut premature = claims(partner);
    premature["nbf"] = json!(now() + leeway + 60);
    let mut no_exp = claims(partner);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_iat = claims(partner);
    no_iat.as_object_mut().unwrap().remove("iat");
    let mut revoked_claims = claims(revoked);
    revoked_claims["iat"] = json!(now() - 60);
    let mut from_the_future = claims(partner);
    from_the_future["iat"] = json!(now() + 3600);

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("Bearer alone", Some("Bearer".into())),
        ("Bearer and spaces", Some("Bearer   ".into())),
        (
            "another scheme",
            Some(format!("Basic {}", hs256(&claims(partner)))),
        ),
        ("not a JWT", Some("Bearer not.a.jwt".into())),
        ("two segments", Some("Bearer a.b".into())),
        (
            "a truncated token",
            Some(format!("Bearer {}", &hs256(&claims(partner))[..40])),
        ),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "HS256 with another secret",
            Some(format!(
                "Bearer {}",
                sign(
                    Header::new(Algorithm::HS256),
                    &claims(partner),
                    &EncodingKey::from_secret(&[7; 40])
                )
            )),
        ),
        (
            "RS256 header, HMAC with the public key",
            Some(format!("Bearer {rsa_public_as_secret}")),
        ),
        (
            "expired past the leeway",
            Some(format!("Bearer {}", hs256(&expired))),
        ),
        (
            "not yet valid past the leeway",
            Some(format!("Bearer {}", hs256(&premature))),
        ),
        ("missing exp", Some(format!("Bearer {}", hs256(&no_exp)))),
        ("missing iat", Some(format!("Bearer {}", hs256(&no_iat)))),
        (
            "iat in the future",
            Some(format!("Bearer {}", hs256(&from_the_future))),
        ),
        (
            "sub not a UUID",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": "admin", "iat": now(), "exp": now() + 60}))
            )),
        ),
        (
            "sub a customer",
            Some(format!("Bearer {}", hs256(&claims(customer)))),
        ),
        (
            "sub unknown",
            Some(format!("Bearer {}", hs256(&claims(Uuid::new_v4())))),
        ),
        (
            "deleted partner",
            Some(format!("Bearer {}", hs256(&claims(deleted)))),
        ),
        (
            "revoked token",
            Some(format!("Bearer {}", hs256(&revoked_claims))),
        ),
        (
            "a kid rotated out",
            Some(format!(
                "Bearer {}",
                sign(
                    with_kid(Algorithm::HS256, "retired"),
                    &claims(partner),
                    &EncodingKey::from_secret(SECRET.as_bytes())
                )
            )),
        ),
        (
            "a kid whose key is of another algorithm",
            Some(format!(
                "Bearer {}",
                sign(
                    with_kid(Algorithm::HS256, "ed"),
                    &claims(partner),
                    &EncodingKey::from_secret(SECRET.as_bytes())
                )
            )),
        ),
    ];
    for (case, authorization) in &cases {
        assert_rejected(&app, &path, authorization.as_deref(), case).await;
    }
    // A token is never taken from the URL.
    let token = hs256(&claims(partner));
    assert_rejected(
        &app,
        &format!("{path}?access_token={token}&token={token}"),
        None,
        "query",
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn times_within_the_leeway_are_accepted(pool: PgPool) {
    let partner = partner(&pool).await;
    let path = listed(&pool, partner).await;
    let app = TestApp::spawn(pool).await;
    let mut just_expired = claims(partner);
    just_expired["exp"] = json!(now() - 10);
    let mut nearly_valid = claims(partner);
    nearly_valid["nbf"] = json!(now() + 10);
    for (case, claims) in [
        ("expired within leeway", just_expired),
        ("nbf within leeway", nearly_valid),
    ] {
        let response = app
            .request(&path, Some(&format!("Bearer {}", hs256(&claims))))
            .await;
        assert_eq!(response.status(), 200, "{case}");
    }
    let lower_case = app
        .request(&path, Some(&format!("bearer {}", hs256(&claims(partner)))))
        .await;
    assert_eq!(lower_case.status(), 200, "the scheme is case-insensitive");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_partners_token_never_reaches_another_partners_lines(pool: PgPool) {
    let tenant_one = tenant(&pool, "一").await;
    let tenant_two = tenant(&pool, "二").await;
    let alice = partner(&pool).await;
    let bob = crate::support::partner(&pool).await;
    let bobs_customer = user(&pool, bob, "customer", "bob的客户").await;
    let alices = line(tenant_one, alice).insert(&pool).await;
    for tenant in [tenant_one, tenant_two] {
        line(tenant, bob).insert(&pool).await;
        line(tenant, bob)
            .user(bobs_customer)
            .nth(1)
            .insert(&pool)
            .await;
    }
    let app = TestApp::spawn(pool).await;
    for tenant in [tenant_one, tenant_two] {
        for query in [
            "",
            "?unused=1",
            "?unused=0",
            &format!("?user_id={bobs_customer}"),
            "?per_page=100",
        ] {
            let body = json(
                app.get_as(
                    alice,
                    &format!("/agent-api/tenant/{tenant}/callerline{query}"),
                )
                .await,
            )
            .await;
            let expected = if tenant == tenant_one
                && !query.contains("unused=0")
                && !query.contains("user_id")
            {
                vec![alices]
            } else {
                vec![]
            };
            assert_eq!(ids(&body), expected, "{tenant}{query}");
        }
    }
}
