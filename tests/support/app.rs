//! The running application over real HTTP against its own fresh database (`#[sqlx::test]`),
//! and what tests ask of its answers.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use agent_api::clock::{Clock, system_clock};
use agent_api::config::Settings;
use agent_api::startup::{Application, Stopper};
use agent_api::tokens::KeyRing;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::roles;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The settings file every test loads, in process or as a child: empty, so an operator's
/// `config/agent-api.toml` in the checkout changes nothing.
pub const NO_SETTINGS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/no-settings.toml"
);

/// Settings as `serve` would load them with only the secret set, made quiet and single-worker.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load_from(
        Some(std::path::Path::new(NO_SETTINGS_FILE)),
        [
            ("APP__AUTH__JWT_SECRET".to_string(), SECRET.to_string()),
            ("APP__LOG__LEVEL".to_string(), "warn".to_string()),
        ],
    )
    .expect("test settings load");
    settings.server.workers = 1;
    settings.ops.port = 0;
    // Limits are exercised by their own tests; elsewhere they would only add noise.
    settings.rate_limit.enabled = false;
    settings
}

pub struct TestApp {
    /// Stops the application as SIGTERM does; dropping the test app ends its background work.
    pub stopper: Stopper,
    pub address: String,
    /// The operations listener: `/metrics`.
    pub ops_address: String,
    pub pool: PgPool,
    keys: KeyRing,
    client: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::configured(pool, |_| {}).await
    }

    /// The app with adjusted settings and the system clock.
    pub async fn configured(pool: PgPool, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_with(pool, configure, system_clock()).await
    }

    /// The app as `serve` runs in production: as the read-only role docs/operations.md makes
    /// (on `pool`'s database, through the same path as `pool`; the feed and standbys too), while
    /// the test keeps `pool`, the owner's, to write as operators do.
    pub async fn spawn_with(
        pool: PgPool,
        configure: impl FnOnce(&mut Settings),
        clock: Clock,
    ) -> Self {
        agent_api::tls::install_crypto_provider();
        let mut settings = test_settings();
        configure(&mut settings);
        let reader = roles::reader(&pool).await;
        let as_reader = {
            let options = (*pool.connect_options())
                .clone()
                .username(&reader.name)
                .password(&reader.password);
            pool.options().clone().connect_lazy_with(options)
        };
        let database = &mut settings.database;
        let in_reader = |url: &SecretString| roles::with_credentials(url.expose_secret(), &reader);
        database.feed_url = database.feed_url.as_ref().map(|url| in_reader(url).into());
        database.replica_urls = database
            .replica_urls
            .iter()
            .map(|url| in_reader(url).into())
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let application = Application::build(&settings, listener, as_reader, clock)
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", application.port());
        let ops_address = format!("http://127.0.0.1:{}", application.ops_port());
        let stopper = application.stopper();
        tokio::spawn(application.run_until_stopped());
        Self {
            stopper,
            address,
            ops_address,
            pool,
            keys: KeyRing::from_settings(&settings.auth).expect("keys load"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Stops the app as SIGTERM does, and waits for every background task to end.
    pub async fn stop(self) {
        self.stopper.stop().await;
        eventually("every background task ended", || async {
            self.stopper.background_tasks() == 0
        })
        .await;
    }

    /// A valid one-hour token for `partner`, issued now.
    pub fn token_for(&self, partner: Uuid) -> String {
        self.token_issued(partner, Utc::now())
    }

    /// A token for `partner` issued at `issued_at`, valid for an hour from then.
    pub fn token_issued(&self, partner: Uuid, issued_at: DateTime<Utc>) -> String {
        self.keys
            .issue(partner, Duration::from_secs(3600), None, issued_at)
            .expect("token issues")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(path, None).await
    }

    /// A token issued a minute ago: one `revoke_old_tokens` revokes.
    pub fn old_token(&self, partner: Uuid) -> String {
        self.token_issued(partner, Utc::now() - chrono::TimeDelta::seconds(60))
    }

    /// Revokes `partner`'s tokens issued over 30 s ago (`old_token`s; those issued from now on
    /// stay valid), as an operator does, then waits until `token` is refused on `path`: how
    /// long that took.
    pub async fn revoke_old_tokens(
        &self,
        pool: &PgPool,
        partner: Uuid,
        path: &str,
        token: &str,
    ) -> Duration {
        sqlx::query("update users set tokens_valid_after = now() - interval '30 s' where id = $1")
            .bind(partner)
            .execute(pool)
            .await
            .unwrap();
        let revoked = std::time::Instant::now();
        eventually("the revoked token is refused", || async {
            self.request(path, Some(token)).await.status() == 401
        })
        .await;
        revoked.elapsed()
    }

    pub async fn get_as(&self, partner: Uuid, path: &str) -> reqwest::Response {
        let token = self.token_for(partner);
        self.request(path, Some(&format!("Bearer {token}"))).await
    }

    pub async fn request(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send().await.expect("request is answered")
    }

    /// `path` on the operations listener (`/readyz` there says more).
    pub async fn ops_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.ops_address))
            .send()
            .await
            .expect("the operations listener answers")
    }

    /// `/metrics` from the operations listener, as Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.ops_address))
            .send()
            .await
            .expect("the operations listener answers");
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits until `/readyz` reports the listing cache in `state` (`live`, `bypassed`, …).
    pub async fn await_listing_cache(&self, state: &str) {
        eventually(&format!("the listing cache is {state}"), || async {
            let ready = json(self.get("/readyz").await).await;
            ready["listing_cache"] == state
        })
        .await;
    }
}

/// A test that ends, or fails, ends the app's background work with it (its feed's sessions
/// included, so the test's database can be dropped).
impl Drop for TestApp {
    fn drop(&mut self) {
        self.stopper.cancel_background();
    }
}

/// Polls `condition` until it holds, failing the test after 10 s. For what the service learns
/// asynchronously, such as the database's change announcements.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fixed clock.
pub fn clock_at(instant: DateTime<Utc>) -> Clock {
    Arc::new(move || instant)
}

/// Parses a JSON body (keeping key order), failing the test on anything else.
pub async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body is read");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the SPEC's error envelope with this HTTP status and code; returns the message.
pub async fn assert_error(response: reqwest::Response, http: u16, code: i64) -> String {
    assert_eq!(response.status().as_u16(), http, "HTTP status");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "error bodies are JSON"
    );
    let body = json(response).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["data"], serde_json::json!([]), "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["code", "status", "message", "data"],
        "envelope keys, in order: {body}"
    );
    body["message"].as_str().unwrap().to_string()
}

/// The text of a JSON document with the whitespace between tokens removed, keeping key order.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The ids of a list response's items, in order.
pub fn ids(body: &Value) -> Vec<Uuid> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {body}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// `postgres://…/<database>` for the database behind `pool`, for running the binary against it.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let name = pool
        .connect_options()
        .get_database()
        .expect("a test pool names its database")
        .to_string();
    let (without_query, query) = match base.split_once('?') {
        Some((url, query)) => (url.to_string(), format!("?{query}")),
        None => (base.clone(), String::new()),
    };
    let authority_end = without_query
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| without_query[start..].find('/').map(|slash| start + slash))
        .unwrap_or(without_query.len());
    format!("{}/{name}{query}", &without_query[..authority_end])
}
