//! Hot standbys taking cache-miss reads (issue: beyond one machine), on a real primary and a
//! `pg_basebackup -R` standby the tests start themselves; `pg_wal_replay_pause()` makes the
//! standby lag on demand. Probes are writes made with triggers disabled: announced to nobody,
//! so a page that does not show one was read where they have not arrived (the paused standby).

mod support;

use std::time::{Duration, Instant};

use agent_api::config::Settings;
use agent_api::store;
use sqlx::{Connection, PgConnection, PgPool};
use support::cluster::Cluster;
use support::process::{agent_api, output_of};
use support::*;
use uuid::Uuid;

/// A primary with one partner's line, a standby of it, and an app reading from both.
struct Replicated {
    /// Held for the test's length: dropped, it stops and removes the primary.
    _primary: Cluster,
    standby: Cluster,
    pool: PgPool,
    app: TestApp,
    partner: Uuid,
    tenant: Uuid,
}

impl Replicated {
    async fn new(configure: impl FnOnce(&mut Settings)) -> Self {
        let primary = Cluster::create();
        primary.start();
        let pool = store::pool(&primary.url(), &test_settings().database).unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        let tenant = tenant(&pool, "云节点").await;
        let partner = partner(&pool).await;
        line(tenant, partner).insert(&pool).await;
        // The service's role before the standby is copied, as an operator's would be.
        roles::reader(&pool).await;
        let standby = Cluster::standby_of(&primary);
        let standby_url = standby.url();
        let app = TestApp::configured(pool.clone(), |s| {
            s.database.replica_urls = vec![standby_url.into()];
            configure(s);
        })
        .await;
        app.await_listing_cache("live").await;
        Self {
            _primary: primary,
            standby,
            pool,
            app,
            partner,
            tenant,
        }
    }

    /// The line's name on page `page` of a list with `per_page` lines: each (page, per_page)
    /// is a page of its own, so a new one is a cache miss.
    async fn name(&self, per_page: u32) -> serde_json::Value {
        let path = format!(
            "/agent-api/tenant/{}/callerline?per_page={per_page}",
            self.tenant
        );
        json(self.app.get_as(self.partner, &path).await).await["data"][0]["name"].clone()
    }

    async fn replay(&self, command: &str) {
        let mut standby = PgConnection::connect(&self.standby.url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("select {command}()")))
            .execute(&mut standby)
            .await
            .unwrap();
    }

    async fn replica_state(&self) -> serde_json::Value {
        let ready = json(self.app.ops_get("/readyz").await).await;
        ready["replicas"][0]["state"].clone()
    }

    async fn rename(&self, name: &str) {
        sqlx::query("update caller_lines set name = $1 where partner_id = $2")
            .bind(name)
            .bind(self.partner)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Pauses the standby's replay and makes a change it will not see and nobody hears: a page
    /// read then shows the old name only if the standby answered it.
    async fn assert_misses_are_read_on_the_standby(&self, per_page: u32) {
        self.await_standby().await;
        self.replay("pg_wal_replay_pause").await;
        execute_unannounced(&self.pool, "update caller_lines set name = $1", "probe").await;
        assert_eq!(self.name(per_page).await, "线路", "read on the standby");
    }

    /// Waits until the standby has replayed everything the primary has written.
    async fn await_standby(&self) {
        let standby = store::pool(&self.standby.url(), &test_settings().database).unwrap();
        let written: i64 =
            sqlx::query_scalar("select (pg_current_wal_insert_lsn() - '0/0')::bigint")
                .fetch_one(&self.pool)
                .await
                .unwrap();
        eventually("the standby catches up", || async {
            let replayed: i64 =
                sqlx::query_scalar("select (pg_last_wal_replay_lsn() - '0/0')::bigint")
                    .fetch_one(&standby)
                    .await
                    .unwrap();
            replayed >= written
        })
        .await;
        standby.close().await;
    }
}

#[tokio::test]
async fn a_caught_up_standby_serves_cache_misses() {
    let replicated = Replicated::new(|_| {}).await;
    // Unannounced, the probe moves no watermark: the standby, which has not replayed it, still
    // counts as caught up with everything the instance has heard of.
    replicated.assert_misses_are_read_on_the_standby(1).await;
}

#[tokio::test]
async fn with_replay_paused_a_rename_is_never_served_stale_and_the_standby_lags() {
    let replicated = Replicated::new(|_| {}).await;
    assert_eq!(replicated.name(1).await, "线路");
    replicated.replay("pg_wal_replay_pause").await;
    replicated.rename("改名").await;
    eventually("the rename is heard", || async {
        replicated.name(1).await == "改名"
    })
    .await;
    // From now on no page, kept or newly read, shows the old name.
    for per_page in 2..40 {
        assert_eq!(
            replicated.name(per_page).await,
            "改名",
            "per_page={per_page}"
        );
    }
    assert_eq!(replicated.replica_state().await, "lagging");
    assert_eq!(replicated.app.get("/readyz").await.status(), 200);
    replicated.replay("pg_wal_replay_resume").await;
    eventually("the standby is ready again", || async {
        replicated.replica_state().await == "ready"
    })
    .await;
    for per_page in 40..80 {
        assert_eq!(
            replicated.name(per_page).await,
            "改名",
            "per_page={per_page}"
        );
    }
}

#[tokio::test]
async fn a_revocation_holds_with_the_standby_behind() {
    let replicated = Replicated::new(|_| {}).await;
    let path = format!("/agent-api/tenant/{}/callerline", replicated.tenant);
    let token = format!(
        "Bearer {}",
        replicated.app.token_issued(
            replicated.partner,
            chrono::Utc::now() - chrono::TimeDelta::seconds(60)
        )
    );
    assert_eq!(
        replicated.app.request(&path, Some(&token)).await.status(),
        200
    );
    replicated.replay("pg_wal_replay_pause").await;
    sqlx::query("update users set tokens_valid_after = now() where id = $1")
        .bind(replicated.partner)
        .execute(&replicated.pool)
        .await
        .unwrap();
    eventually("the revoked token is refused", || async {
        replicated.app.request(&path, Some(&token)).await.status() == 401
    })
    .await;
    for per_page in 1..30 {
        let page = format!("{path}?per_page={per_page}");
        let status = replicated.app.request(&page, Some(&token)).await.status();
        assert_eq!(status, 401, "per_page={per_page}");
    }
}

#[tokio::test]
async fn commits_made_while_the_feed_was_deaf_are_covered_once_it_listens_again() {
    let replicated = Replicated::new(|_| {}).await;
    assert_eq!(replicated.name(1).await, "线路");
    replicated.replay("pg_wal_replay_pause").await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1",
    )
    .bind(store::feed::changes::APPLICATION_NAME)
    .fetch_all(&replicated.pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true]);
    // Committed while nobody listens: no announcement will ever name it.
    replicated.rename("聋时改名").await;
    replicated.app.await_listing_cache("bypassed").await;
    replicated.app.await_listing_cache("live").await;
    for per_page in 1..30 {
        assert_eq!(
            replicated.name(per_page).await,
            "聋时改名",
            "per_page={per_page}"
        );
    }
}

#[tokio::test]
async fn a_read_waits_for_a_lagging_standby_no_longer_than_the_bound() {
    const WAIT_MS: u64 = 300;
    let replicated = Replicated::new(|s| s.database.replica_max_wait_ms = WAIT_MS).await;
    replicated.replay("pg_wal_replay_pause").await;
    replicated.rename("改名").await;
    eventually("the rename is heard", || async {
        replicated.name(1).await == "改名"
    })
    .await;
    // The standby is passed over now; once it catches up it is tried again, and waited for.
    replicated.replay("pg_wal_replay_resume").await;
    eventually("the standby is ready again", || async {
        replicated.replica_state().await == "ready"
    })
    .await;
    replicated.replay("pg_wal_replay_pause").await;
    replicated.rename("再改名").await;
    eventually("the second rename is heard", || async {
        replicated.name(2).await == "再改名"
    })
    .await;
    let started = Instant::now();
    assert_eq!(replicated.name(3).await, "再改名");
    assert!(
        started.elapsed() < Duration::from_millis(WAIT_MS) + Duration::from_secs(1),
        "a miss took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stopped_standby_is_passed_over_and_used_again_once_back() {
    let replicated = Replicated::new(|s| s.database.replica_retry_ms = 200).await;
    replicated.standby.stop();
    for per_page in 1..10 {
        assert_eq!(replicated.name(per_page).await, "线路");
    }
    assert_eq!(replicated.replica_state().await, "down");
    assert_eq!(
        replicated.app.get("/readyz").await.status(),
        200,
        "the primary answers"
    );
    replicated.standby.start();
    eventually("the standby is ready again", || async {
        replicated.replica_state().await == "ready"
    })
    .await;
    replicated.assert_misses_are_read_on_the_standby(20).await;
}

/// A standby that goes silent without closing (its processes stopped: a frozen VM, a stalled
/// disk) holds no read past the deadline: each goes to the primary, and the standby is passed
/// over, said on /readyz, until it answers again.
#[tokio::test]
async fn a_frozen_standby_holds_no_read_past_its_deadline() {
    const DEADLINE_MS: u64 = 400;
    let replicated = Replicated::new(|s| {
        s.database.replica_deadline_ms = DEADLINE_MS;
        s.database.replica_retry_ms = 200;
    })
    .await;
    replicated.assert_misses_are_read_on_the_standby(1).await;
    replicated.replay("pg_wal_replay_resume").await;
    replicated.await_standby().await;
    replicated.standby.freeze();
    let started = Instant::now();
    let replicated = &replicated;
    // Four pages missed at once, each its own read.
    let names = futures_util::future::join_all((2..6).map(|per_page| async move {
        let name = replicated.name(per_page).await;
        (name, started.elapsed())
    }))
    .await;
    for (name, took) in names {
        assert_eq!(name, "probe", "read on the primary");
        assert!(
            took < Duration::from_millis(DEADLINE_MS) + Duration::from_secs(1),
            "a miss took {took:?}"
        );
    }
    assert_eq!(replicated.replica_state().await, "down");
    replicated.standby.thaw();
    eventually("the standby is ready again", || async {
        replicated.replica_state().await == "ready"
    })
    .await;
}

/// A URL naming a server that is no standby of this primary (another cluster) is never read,
/// whatever it holds: said once at start, and on /readyz.
#[tokio::test]
async fn a_server_that_is_no_standby_of_the_primary_is_never_read() {
    let (tenant, partner) = (Uuid::new_v4(), Uuid::new_v4());
    // Two clusters with the same schema and the same rows, but another name for the line.
    let same_rows = async |cluster: &Cluster, line_name: &str| {
        let pool = store::pool(&cluster.url(), &test_settings().database).unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        sqlx::query("insert into tenants (id, name) values ($1, '云节点')")
            .bind(tenant)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("insert into users (id, type, name) values ($1, 'partner', '伙伴')")
            .bind(partner)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "insert into caller_lines (tenant_id, partner_id, name, caller_number, call_line) \
             values ($1, $2, $3, 'c', 1)",
        )
        .bind(tenant)
        .bind(partner)
        .bind(line_name)
        .execute(&pool)
        .await
        .unwrap();
        pool
    };
    let primary = Cluster::create();
    primary.start();
    let pool = same_rows(&primary, "线路").await;
    let stranger = Cluster::create();
    stranger.start();
    let stranger_pool = same_rows(&stranger, "别处的").await;
    // The service's role may log in there too: it answers, but as no standby of the primary.
    roles::reader(&stranger_pool).await;
    let stranger_url = stranger.url();
    let app = TestApp::configured(pool.clone(), |s| {
        s.database.replica_urls = vec![stranger_url.into()];
    })
    .await;
    app.await_listing_cache("live").await;
    let ready = json(app.ops_get("/readyz").await).await;
    assert_eq!(ready["replicas"][0]["state"], "not a standby", "{ready}");
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    for per_page in 1..10 {
        let page = format!("{path}?per_page={per_page}");
        let body = json(app.get_as(partner, &page).await).await;
        assert_eq!(body["data"][0]["name"], "线路", "per_page={per_page}");
    }
    stranger_pool.close().await;
}

#[tokio::test]
async fn serve_refuses_a_standby_as_its_primary_in_one_line() {
    let primary = Cluster::create();
    primary.start();
    let standby = Cluster::standby_of(&primary);
    let output = output_of(agent_api(Some(&standby.url())).arg("serve"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL names a standby"), "{stderr}");
}
