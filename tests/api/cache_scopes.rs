//! What a committed change drops from memory: the pages that can show it and nothing else, and
//! partners' standing only when their own rows change. Probes are writes made with triggers
//! disabled (announced to nobody): a page that does not show one was answered from memory.

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

/// Partner P with a line on tenants T and U (the one on T allocated to P's customer), partner Q
/// with a line on T, and a sentinel partner's line on a tenant of its own; the app listening,
/// with every page read once, so kept.
struct World {
    app: TestApp,
    pool: PgPool,
    p: Uuid,
    q: Uuid,
    t: Uuid,
    u: Uuid,
    customer: Uuid,
    sentinel: (Uuid, Uuid),
}

impl World {
    async fn new(pool: PgPool) -> Self {
        let t = tenant(&pool, "T").await;
        let u = tenant(&pool, "U").await;
        let p = partner(&pool).await;
        let q = partner(&pool).await;
        let customer = user(&pool, p, "customer", "客户").await;
        line(t, p).user(customer).insert(&pool).await;
        line(u, p).insert(&pool).await;
        line(t, q).insert(&pool).await;
        let sentinel = (partner(&pool).await, tenant(&pool, "S").await);
        line(sentinel.1, sentinel.0).insert(&pool).await;
        let app = TestApp::spawn(pool.clone()).await;
        app.await_listing_cache("live").await;
        let world = Self {
            app,
            pool,
            p,
            q,
            t,
            u,
            customer,
            sentinel,
        };
        for page in world.pages() {
            world.read(page).await;
        }
        world.read(sentinel).await;
        world
    }

    /// (partner, tenant) of every page under test: P on T, P on U, Q on T.
    fn pages(&self) -> [(Uuid, Uuid); 3] {
        [(self.p, self.t), (self.p, self.u), (self.q, self.t)]
    }

    async fn read(&self, (partner, tenant): (Uuid, Uuid)) -> Value {
        let path = format!("/agent-api/tenant/{tenant}/callerline");
        json(self.app.get_as(partner, &path).await).await["data"][0].clone()
    }

    async fn execute(&self, statement: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// After `statements` (committed, announced as they announce), exactly the pages marked in
    /// `expected` are read again; the others are still answered from memory.
    async fn assert_refreshes(self, statements: &[String], expected: [bool; 3]) {
        execute_unannounced(&self.pool, "update caller_lines set name = $1", "probe").await;
        for statement in statements {
            self.execute(statement).await;
        }
        // Announcements arrive in commit order: once the sentinel's, made last, is heard,
        // the statements' have been too.
        let (sentinel_partner, _) = self.sentinel;
        self.execute(&format!(
            "update caller_lines set call_line = 2 where partner_id = '{sentinel_partner}'"
        ))
        .await;
        eventually("the sentinel's change is heard", || async {
            self.read(self.sentinel).await["name"] == "probe"
        })
        .await;
        let mut refreshed = Vec::new();
        for page in self.pages() {
            refreshed.push(self.read(page).await["name"] == "probe");
        }
        assert_eq!(refreshed, expected, "{statements:?}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_line_change_refreshes_only_its_partners_page_on_its_tenant(pool: PgPool) {
    let world = World::new(pool).await;
    let (p, t) = (world.p, world.t);
    let change = format!(
        "update caller_lines set call_line = 7 where partner_id = '{p}' and tenant_id = '{t}'"
    );
    world
        .assert_refreshes(&[change], [true, false, false])
        .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_customer_change_refreshes_its_partners_pages_only(pool: PgPool) {
    let world = World::new(pool).await;
    let change = format!(
        "update users set phone = '139' where id = '{}'",
        world.customer
    );
    world.assert_refreshes(&[change], [true, true, false]).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tenant_change_refreshes_every_partners_page_on_it(pool: PgPool) {
    let world = World::new(pool).await;
    let change = format!("update tenants set name = '新名' where id = '{}'", world.t);
    world.assert_refreshes(&[change], [true, false, true]).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn writes_no_page_shows_refresh_nothing(pool: PgPool) {
    let world = World::new(pool).await;
    let p = world.p;
    let deleted = line(world.t, p).deleted().insert(&world.pool).await;
    let split = line(world.u, p)
        .split_from(deleted)
        .insert(&world.pool)
        .await;
    let statements = [
        "alter table users add column last_login_at timestamptz".to_string(),
        "update users set last_login_at = now()".to_string(),
        "update users set updated_at = now() - interval '1 day'".to_string(),
        "update tenants set updated_at = now() - interval '1 day'".to_string(),
        format!("update caller_lines set name = 'x' where id in ('{deleted}', '{split}')"),
    ];
    world
        .assert_refreshes(&statements, [false, false, false])
        .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_fresh_token_per_call_is_answered_from_memory(pool: PgPool) {
    let world = World::new(pool).await;
    let page = world.pages()[0];
    execute_unannounced(&world.pool, "update caller_lines set name = $1", "probe").await;
    let path = format!("/agent-api/tenant/{}/callerline", page.1);
    for seconds_ago in [1, 2, 3, 30] {
        let token = world
            .app
            .token_issued(world.p, Utc::now() - TimeDelta::seconds(seconds_ago));
        let response = world
            .app
            .request(&path, Some(&format!("Bearer {token}")))
            .await;
        let body = json(response).await;
        assert_eq!(
            body["data"][0]["name"], "线路",
            "token issued {seconds_ago} s ago"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_partners_standing_is_read_again_only_when_its_partner_changes(pool: PgPool) {
    let world = World::new(pool).await;
    let (p, t) = world.pages()[0];
    let path = format!("/agent-api/tenant/{t}/callerline");
    let old_token = format!(
        "Bearer {}",
        world
            .app
            .token_issued(p, Utc::now() - TimeDelta::seconds(60))
    );
    assert_eq!(
        world.app.request(&path, Some(&old_token)).await.status(),
        200
    );
    // Revoked without a word: the standing in memory still accepts the token.
    let revoke = format!("update users set tokens_valid_after = now() where id = '{p}'");
    execute_unannounced(&world.pool, &revoke, "unused").await;
    assert_eq!(
        world.app.request(&path, Some(&old_token)).await.status(),
        200
    );
    // Another partner's change leaves P's standing alone.
    world
        .execute(&format!(
            "update users set tokens_valid_after = now() where id = '{}'",
            world.q
        ))
        .await;
    // Announced: read again, and refused.
    world.execute(&revoke).await;
    eventually("the revoked token is refused", || async {
        world.app.request(&path, Some(&old_token)).await.status() == 401
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn pages_read_while_their_line_is_rewritten_settle_on_the_last_write(pool: PgPool) {
    let world = World::new(pool).await;
    let page = world.pages()[0];
    let (p, t) = page;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let path = format!("/agent-api/tenant/{t}/callerline");
            let token = format!("Bearer {}", world.app.token_for(p));
            let (client, address) = (world.app.client().clone(), world.app.address.clone());
            tokio::spawn(async move {
                for _ in 0..60 {
                    let url = format!("{address}{path}");
                    client
                        .get(url)
                        .header("Authorization", &token)
                        .send()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for n in 0..40 {
        world
            .execute(&format!(
                "update caller_lines set name = 'w{n}' where partner_id = '{p}' and tenant_id = '{t}'"
            ))
            .await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    eventually("the last write is shown", || async {
        world.read(page).await["name"] == "w39"
    })
    .await;
    for _ in 0..20 {
        assert_eq!(world.read(page).await["name"], "w39", "no older page kept");
    }
}
