//! The listing cache: pages served from memory only while the database's change feed says
//! nothing has changed. A write made with triggers disabled is the probe: it is not announced,
//! so a page that does not show it was served from memory.

use std::io::Read;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::proxy::{Proxy, before_database};
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

/// As `live_setup`, with the feed reaching the database through a proxy the test can cut.
async fn live_setup_with_the_feed_behind_a_proxy(pool: PgPool) -> (Proxy, Setup) {
    let (proxy, feed_url) = before_database(&pool).await;
    let setup = setup(pool, |settings| {
        settings.database.feed_url = Some(feed_url.into());
    })
    .await;
    setup.app.await_listing_cache("live").await;
    (proxy, setup)
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

    // The documented repair after a load with triggers off announces itself.
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
    .bind(agent_api::store::feed::changes::APPLICATION_NAME)
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

/// A firewall drops the feed's flow (its socket stays open, nothing arrives any more), then the
/// partner's old tokens are revoked: `token` is refused within the staleness bound (and a
/// second for the request).
async fn revocation_holds_with_the_feed_cut(setup: &Setup, proxy: &Proxy, token: &str) {
    proxy.swallow();
    let refused = setup
        .app
        .revoke_old_tokens(&setup.pool, setup.partner, &setup.path, token)
        .await;
    let bound = std::time::Duration::from_millis(test_settings().listing_cache.max_staleness_ms);
    assert!(
        refused <= bound + std::time::Duration::from_secs(1),
        "refused {refused:?} after the revocation"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_feed_cut_without_a_word_is_distrusted_within_the_staleness_bound(pool: PgPool) {
    let (proxy, setup) = live_setup_with_the_feed_behind_a_proxy(pool).await;
    let app = &setup.app;
    let token = format!("Bearer {}", app.old_token(setup.partner));
    assert_eq!(app.request(&setup.path, Some(&token)).await.status(), 200);

    revocation_holds_with_the_feed_cut(&setup, &proxy, &token).await;
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

/// A session of the role that may only read, as docs/operations.md makes it, on this test's
/// database.
async fn reader_session(pool: &PgPool) -> sqlx::PgConnection {
    use sqlx::Connection;
    let reader = roles::reader(pool).await;
    sqlx::PgConnection::connect(&roles::url_as(pool, &reader))
        .await
        .unwrap()
}

/// A role that can only read hears every heartbeat on the channel and may send its own: one
/// dated in the future (it used to extend trust past the bound, and a revoked token was served
/// after the feed was cut) proves nothing, for none carries this instance's tag.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_heartbeat_forged_by_a_role_that_only_reads_extends_no_trust(pool: PgPool) {
    let (proxy, setup) = live_setup_with_the_feed_behind_a_proxy(pool.clone()).await;
    let app = &setup.app;
    let token = format!("Bearer {}", app.old_token(setup.partner));
    assert_eq!(app.request(&setup.path, Some(&token)).await.status(), 200);

    let mut session = reader_session(&pool).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(agent_api::store::feed::announcements::CHANNEL)
        .await
        .unwrap();
    let heard = loop {
        let payload = listener.recv().await.unwrap().payload().to_string();
        if payload.starts_with("heartbeat ") {
            break payload;
        }
    };
    let mut words = heard.split(' ').skip(1);
    let (tag, nanos) = (words.next().unwrap(), words.next().unwrap());
    let later: u64 = nanos.parse::<u64>().unwrap() + 3_600_000_000_000;
    for forged in [format!("heartbeat {tag} {later}"), heard.clone()] {
        sqlx::query("select pg_notify('agent_api_listing_changed', $1)")
            .bind(forged)
            .execute(&mut session)
            .await
            .unwrap();
    }
    revocation_holds_with_the_feed_cut(&setup, &proxy, &token).await;
    drop((session, listener));
    setup.app.stop().await;
}

/// An `all` that a role that can only read sends (with or without an epoch) drops nothing;
/// the schema's own functions, which only the owner may run, are heard. Nor can that role run
/// them, or attach them to a trigger of its own.
#[sqlx::test(migrator = "MIGRATOR")]
async fn only_the_schemas_own_functions_can_drop_everything(pool: PgPool) {
    let setup = live_setup(pool.clone()).await;
    assert_eq!(setup.line_name().await, "线路");
    setup.rename_unannounced("unannounced").await;
    let mut session = reader_session(&pool).await;
    for forged in ["all", "all 1", "all 999999", "all x", "caller_lines"] {
        sqlx::query("select pg_notify('agent_api_listing_changed', $1)")
            .bind(forged)
            .execute(&mut session)
            .await
            .unwrap();
    }
    for refused in [
        "select announce_everything()",
        "select rebuild_caller_line_counts()",
        "create temporary table t (x int); \
         create trigger t after truncate on t for each statement execute function everything_changed()",
    ] {
        let outcome = sqlx::raw_sql(refused).execute(&mut session).await;
        assert!(outcome.is_err(), "the reader may not: {refused}");
    }
    // Notifications are heard in commit order: once an announcement the owner makes after
    // them is heard (another partner's page drops), the forged ones have been heard too.
    let tenant = tenant(&pool, "别的云节点").await;
    let other = partner(&pool).await;
    line(tenant, other).insert(&pool).await;
    let other_path = format!("/agent-api/tenant/{tenant}/callerline");
    let other_name = || async {
        json(setup.app.get_as(other, &other_path).await).await["data"][0]["name"].clone()
    };
    assert_eq!(other_name().await, "线路");
    sqlx::query("update caller_lines set name = '改了' where partner_id = $1")
        .bind(other)
        .execute(&pool)
        .await
        .unwrap();
    eventually("the owner's later announcement is heard", || async {
        other_name().await == "改了"
    })
    .await;
    assert_eq!(setup.line_name().await, "线路", "still served from memory");
    sqlx::query("select rebuild_caller_line_counts()")
        .execute(&pool)
        .await
        .unwrap();
    eventually("the owner's 'all' is heard", || async {
        setup.line_name().await == "unannounced"
    })
    .await;
    drop(session);
    setup.app.stop().await;
}

/// A feed whose path was cut without a word for longer than it waits for a heartbeat is made
/// anew promptly once the path heals (its connection attempts are bounded: one sent into the
/// silence used to wait for TCP's own retries, ~28 s after an 8 s cut).
#[sqlx::test(migrator = "MIGRATOR")]
async fn after_a_long_silent_cut_the_feed_is_heard_again_within_two_seconds_of_the_heal(
    pool: PgPool,
) {
    let (proxy, setup) = live_setup_with_the_feed_behind_a_proxy(pool).await;
    proxy.swallow();
    setup.app.await_listing_cache("bypassed").await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    proxy.pass();
    let healed = std::time::Instant::now();
    setup.app.await_listing_cache("live").await;
    assert!(
        healed.elapsed() <= std::time::Duration::from_secs(2),
        "live again {:?} after the heal",
        healed.elapsed()
    );
}
