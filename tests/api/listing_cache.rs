//! The listing cache: pages served from memory only while the database's change feed says
//! nothing has changed. A write made with triggers disabled is the probe: it is not announced,
//! so a page that does not show it was served from memory.

use std::io::Read;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::proxy::{Proxy, through};
use crate::support::*;

struct Setup {
    app: TestApp,
    pool: PgPool,
    path: String,
    partner: Uuid,
    /// One token throughout: pages are kept per token (its issue time is part of the key).
    authorization: String,
    line: Uuid,
}

async fn setup(pool: PgPool, configure: impl FnOnce(&mut agent_api::config::Settings)) -> Setup {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let line = line(tenant, partner).insert(&pool).await;
    let app = TestApp::configured(pool.clone(), configure).await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    Setup {
        app,
        pool,
        path: format!("/agent-api/tenant/{tenant}/callerline"),
        partner,
        authorization,
        line,
    }
}

/// The default settings, once the cache is listening.
async fn live_setup(pool: PgPool) -> Setup {
    let setup = setup(pool, |_| {}).await;
    setup.app.await_listing_cache("live").await;
    setup
}

impl Setup {
    async fn line_name(&self) -> Value {
        let response = self
            .app
            .request(&self.path, Some(&self.authorization))
            .await;
        let body = json(response).await;
        body["data"][0]["name"].clone()
    }

    /// Renames the line without firing any trigger, so no change is announced.
    async fn rename_unannounced(&self, name: &str) {
        let statement = format!(
            "update caller_lines set name = $1 where id = '{}'",
            self.line
        );
        execute_unannounced(&self.pool, &statement, name).await;
    }

    async fn rename(&self, name: &str) {
        sqlx::query("update caller_lines set name = $1 where id = $2")
            .bind(name)
            .bind(self.line)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn await_name(&self, name: &str) {
        eventually(&format!("the page shows {name}"), || async {
            self.line_name().await == name
        })
        .await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn pages_come_from_memory_until_a_change_is_announced(pool: PgPool) {
    let setup = live_setup(pool).await;
    assert_eq!(setup.line_name().await, "线路");

    setup.rename_unannounced("unannounced").await;
    assert_eq!(setup.line_name().await, "线路", "served from memory");

    setup.rename("announced").await;
    setup.await_name("announced").await;

    // The README's repair after a load with triggers off announces itself.
    setup.rename_unannounced("restored").await;
    sqlx::query("select rebuild_caller_line_counts()")
        .execute(&setup.pool)
        .await
        .unwrap();
    setup.await_name("restored").await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_revoked_token_is_not_served_from_memory(pool: PgPool) {
    let setup = live_setup(pool).await;
    let app = &setup.app;
    let old = app.token_issued(setup.partner, Utc::now() - TimeDelta::seconds(60));
    let path = setup.path.as_str();
    let get_with =
        |token: String| async move { app.request(path, Some(&format!("Bearer {token}"))).await };
    assert_eq!(get_with(old.clone()).await.status(), 200);

    sqlx::query(
        "update users set tokens_valid_after = now() - interval '30 seconds' where id = $1",
    )
    .bind(setup.partner)
    .execute(&setup.pool)
    .await
    .unwrap();
    eventually("the old token is refused", || async {
        get_with(old.clone()).await.status() == 401
    })
    .await;

    // A page kept for a new token is not one the old token may read.
    let new = app.token_for(setup.partner);
    assert_eq!(get_with(new.clone()).await.status(), 200);
    assert_eq!(get_with(new).await.status(), 200);
    assert_error(get_with(old).await, 401, 401).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_lost_change_feed_serves_nothing_stale_and_comes_back(pool: PgPool) {
    let setup = live_setup(pool).await;
    assert_eq!(setup.line_name().await, "线路");

    setup.rename_unannounced("while deaf").await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and application_name = $1",
    )
    .bind(agent_api::store::changes::APPLICATION_NAME)
    .fetch_all(&setup.pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one listener");
    setup.await_name("while deaf").await;

    // Listening again, pages are kept again.
    setup.app.await_listing_cache("live").await;
    assert_eq!(setup.line_name().await, "while deaf");
    setup.rename_unannounced("unannounced").await;
    assert_eq!(setup.line_name().await, "while deaf", "served from memory");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn compressed_pages_are_kept_compressed_and_apart(pool: PgPool) {
    let setup = live_setup(pool).await;
    let gzipped_name = || async {
        let response = setup
            .app
            .client()
            .get(format!("{}{}", setup.app.address, setup.path))
            .header("Authorization", &setup.authorization)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&response.bytes().await.unwrap()[..])
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["data"][0]["name"].clone()
    };
    assert_eq!(gzipped_name().await, "线路");
    setup.rename_unannounced("unannounced").await;
    assert_eq!(gzipped_name().await, "线路", "the gzip page from memory");
    assert_eq!(
        setup.line_name().await,
        "unannounced",
        "the plain page is kept apart, and was not kept yet"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_disabled_cache_reads_every_page_from_the_database(pool: PgPool) {
    let setup = setup(pool, |settings| settings.listing_cache.enabled = false).await;
    setup.app.await_listing_cache("disabled").await;
    assert_eq!(setup.line_name().await, "线路");
    setup.rename_unannounced("unannounced").await;
    assert_eq!(setup.line_name().await, "unannounced");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_feed_cut_without_a_word_is_distrusted_within_the_staleness_bound(pool: PgPool) {
    let database = database_url(&pool);
    let options = pool.connect_options();
    let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let feed_url = through(&database, &proxy);
    let setup = setup(pool, |settings| {
        settings.database.feed_url = Some(feed_url.into());
    })
    .await;
    let app = &setup.app;
    app.await_listing_cache("live").await;
    let token = format!(
        "Bearer {}",
        app.token_issued(setup.partner, Utc::now() - TimeDelta::seconds(60))
    );
    assert_eq!(app.request(&setup.path, Some(&token)).await.status(), 200);

    // A firewall drops the feed's flow: its socket stays open, nothing arrives any more.
    proxy.swallow();
    sqlx::query("update users set tokens_valid_after = now() - interval '30 s' where id = $1")
        .bind(setup.partner)
        .execute(&setup.pool)
        .await
        .unwrap();
    let revoked = std::time::Instant::now();
    eventually("the revoked token is refused", || async {
        app.request(&setup.path, Some(&token)).await.status() == 401
    })
    .await;
    let bound = std::time::Duration::from_millis(test_settings().listing_cache.max_staleness_ms);
    assert!(
        revoked.elapsed() <= bound + std::time::Duration::from_secs(1),
        "refused {:?} after the revocation",
        revoked.elapsed()
    );
    let ready = json(app.get("/readyz").await).await;
    assert_eq!(ready["listing_cache"], "bypassed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_feed_that_cannot_hear_is_never_trusted(pool: PgPool) {
    // LISTEN works in another database of the same server, but what is announced here (the
    // heartbeats included) is never heard there: as behind a transaction pooler.
    let elsewhere = database_url(&pool).replacen(&database_name(&pool), "postgres", 1);
    let setup = setup(pool, |settings| {
        settings.database.feed_url = Some(elsewhere.into());
        settings.listing_cache.max_staleness_ms = 500;
    })
    .await;
    // Four times the bound: a feed that could hear would have been trusted long before.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let ready = json(setup.app.get("/readyz").await).await;
    assert_eq!(ready["listing_cache"], "bypassed", "{ready}");
    assert_eq!(setup.line_name().await, "线路");
    setup.rename_unannounced("unannounced").await;
    assert_eq!(
        setup.line_name().await,
        "unannounced",
        "read from the database"
    );
}
