//! What a role that is neither the owner nor the service's (the operators' writer role, as
//! docs/operations.md makes it) can do to the instances through the change feed's channel,
//! which anyone who can connect may send on: flood it, forge the schema's announcements, cut
//! the feed during a backlog; and what a scraper of `/metrics` costs the database.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::support::proxy::before_database;
use crate::support::*;

/// One partner's one line, served and kept; the neighbour's session beside it.
struct Neighbourhood {
    app: TestApp,
    pool: PgPool,
    tenant: Uuid,
    partner: Uuid,
    line: Uuid,
    authorization: String,
    /// A session of the writer role: neither the owner's nor the service's.
    neighbour: PgConnection,
}

async fn neighbourhood(
    pool: PgPool,
    configure: impl FnOnce(&mut agent_api::config::Settings),
) -> Neighbourhood {
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let line = line(tenant, partner).insert(&pool).await;
    let app = TestApp::configured(pool.clone(), configure).await;
    app.await_listing_cache("live").await;
    let authorization = format!("Bearer {}", app.token_for(partner));
    let writer = roles::writer(&pool).await;
    let neighbour = PgConnection::connect(&roles::url_as(&pool, &writer))
        .await
        .unwrap();
    let neighbourhood = Neighbourhood {
        app,
        pool,
        tenant,
        partner,
        line,
        authorization,
        neighbour,
    };
    assert_eq!(neighbourhood.name().await, "线路");
    neighbourhood
}

impl Neighbourhood {
    fn path(&self) -> String {
        format!("/agent-api/tenant/{}/callerline", self.tenant)
    }

    async fn name(&self) -> Value {
        let response = self
            .app
            .request(&self.path(), Some(&self.authorization))
            .await;
        json(response).await["data"][0]["name"].clone()
    }

    /// Renames the line without announcing it: a page still showing the old name came from
    /// memory, one showing the new name was read again.
    async fn rename_unannounced(&self, name: &str) {
        let statement = format!(
            "update caller_lines set name = $1 where id = '{}'",
            self.line
        );
        execute_unannounced(&self.pool, &statement, name).await;
    }

    /// The neighbour sends `count` notifications in one statement, `payload` with `$n` as the
    /// number of each.
    async fn flood(&mut self, payload: &str, count: u32) {
        let statement = format!(
            "select count(pg_notify('agent_api_listing_changed', \
             replace('{payload}', '$n', n::text))) from generate_series(1, {count}) n"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut self.neighbour)
            .await
            .unwrap();
    }

    /// How long `/readyz` said `bypassed` while polled every 20 ms for `during`.
    async fn bypassed_during(&self, during: Duration) -> Duration {
        let (started, mut bypassed) = (Instant::now(), Duration::ZERO);
        while started.elapsed() < during {
            let asked = Instant::now();
            let ready = json(self.app.get("/readyz").await).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ready["listing_cache"] != "live" {
                bypassed += asked.elapsed();
            }
        }
        bypassed
    }
}

/// 100,000 `all <an epoch beyond the schema's>` in one statement (0.2 s to send) used to cost
/// a round trip each: every instance went `bypassed` for about a minute. The schema's own
/// announcements are tagged now, and these are passed over without a question.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_flood_of_forged_alls_leaves_the_instance_live(pool: PgPool) {
    let mut place = neighbourhood(pool, |_| {}).await;
    place.flood("all 9000000$n", 100_000).await;
    let bypassed = place.bypassed_during(Duration::from_secs(5)).await;
    assert!(
        bypassed <= Duration::from_secs(3),
        "bypassed for {bypassed:?}"
    );
    place.app.await_listing_cache("live").await;
    // Still hearing the schema: an announced rename is served.
    sqlx::query("update caller_lines set name = '改了' where id = $1")
        .bind(place.line)
        .execute(&place.pool)
        .await
        .unwrap();
    eventually("the rename is heard", || async {
        place.name().await == "改了"
    })
    .await;
}

/// A silent cut of the feed while it works through a backlog used to hang it for good (one
/// instance stayed `bypassed` 9.5 minutes, never saying it lost the feed): every question the
/// feed asks is bounded now, and its watchdog is looked at between turns.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_silent_cut_during_a_backlog_heals_within_two_seconds(pool: PgPool) {
    let (proxy, feed_url) = before_database(&pool).await;
    let mut place = neighbourhood(pool, |settings| {
        settings.database.feed_url = Some(feed_url.into());
    })
    .await;
    // A backlog of 100,000: 82f9d1b worked through 20,000 before the cut came.
    place.flood("all 9000000$n", 100_000).await;
    // Cut while the feed works through them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.swallow();
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.pass();
    let healed = Instant::now();
    place.app.await_listing_cache("live").await;
    assert!(
        healed.elapsed() <= Duration::from_secs(2),
        "live again {:?} after the heal",
        healed.elapsed()
    );
}

/// `partners <A>`, 50 a second for 6 s, used to drop A's pages each time (hits from 88 of 89
/// to 1 of 87): without the schema's tag it drops nothing now.
#[sqlx::test(migrator = "MIGRATOR")]
async fn forged_announcements_of_a_partner_leave_its_pages_kept(pool: PgPool) {
    let mut place = neighbourhood(pool, |_| {}).await;
    place.rename_unannounced("read again").await;
    let partner = place.partner;
    let (mut kept, mut asked) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        sqlx::query("select pg_notify('agent_api_listing_changed', $1)")
            .bind(format!("partners {partner}"))
            .execute(&mut place.neighbour)
            .await
            .unwrap();
        asked += 1;
        kept += u32::from(place.name().await == "线路");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        kept * 100 >= asked * 90,
        "{kept} of {asked} answers from memory"
    );
}

/// 1,100 statements of 100 random pairs each (0.56 s) overflowed the scopes an instance
/// remembers and dropped every page of every partner: now they are not the schema's, and drop
/// nothing.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_flood_of_forged_pairs_leaves_another_partners_page_kept(pool: PgPool) {
    let mut place = neighbourhood(pool, |_| {}).await;
    place.rename_unannounced("read again").await;
    let hundred_random_pairs = "select pg_notify('agent_api_listing_changed', 'pairs ' || \
        (select string_agg(gen_random_uuid() || '/' || gen_random_uuid(), ' ') \
         from generate_series(1, 100)))";
    for _ in 0..1_100 {
        sqlx::raw_sql(hundred_random_pairs)
            .execute(&mut place.neighbour)
            .await
            .unwrap();
    }
    // Once a rename the owner makes after the flood is heard, the flood was heard before it.
    let other_tenant = tenant(&place.pool, "别的云节点").await;
    let other = partner(&place.pool).await;
    line(other_tenant, other).insert(&place.pool).await;
    let other_path = format!("/agent-api/tenant/{other_tenant}/callerline");
    eventually("the owner's later write is heard", || async {
        json(place.app.get_as(other, &other_path).await).await["data"][0]["name"] == "线路"
    })
    .await;
    assert_eq!(place.name().await, "线路", "still served from memory");
}

/// A scrape of `/metrics` used to cost a statement on the primary (35,800 scrapes: 34,396
/// transactions): the gauge that needs the database is refreshed in the background now.
#[sqlx::test(migrator = "MIGRATOR")]
async fn scrapes_of_metrics_cost_the_database_nothing(pool: PgPool) {
    let place = neighbourhood(pool, |_| {}).await;
    let transactions = || async {
        sqlx::query_scalar::<_, i64>(
            "select xact_commit + xact_rollback from pg_stat_database \
             where datname = current_database()",
        )
        .fetch_one(&place.pool)
        .await
        .unwrap()
    };
    // The statistics are reported by each session now and then: a moment to settle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = transactions().await;
    let started = Instant::now();
    for _ in 0..10_000 {
        place.app.metrics().await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = transactions().await - before;
    // What runs anyway meanwhile: heartbeats (4 a second), the health probe (1 a second), the
    // gauge's refresh (one per 15 s), and this test's own questions.
    let anyway = 10 * (took.as_secs() as i64 + 3);
    assert!(
        spent <= anyway,
        "{spent} transactions during 10,000 scrapes in {took:?} (at most {anyway} expected)"
    );
}
