//! `serve` needs no more than docs/operations.md grants its role (every test's app runs as it):
//! every route works and `/readyz` says ready under exactly those grants, the role can change
//! nothing, and a grant missing is named, not a silent outage.

use std::time::{Duration, Instant};

use agent_api::config::LegacyMode;
use agent_api::store::demo;
use sqlx::PgPool;

use crate::support::process::spawn_serve;
use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_documented_reader_is_ready_serves_every_route_and_writes_nothing(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let app = TestApp::configured(pool.clone(), |s| {
        s.legacy.callerline = LegacyMode::On;
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "{}", json(ready).await);
    app.await_listing_cache("live").await;
    let lines = format!("/agent-api/tenant/{}/callerline", demo::DEMO_TENANT_ID);
    for (path, code) in [
        (lines.as_str(), 200),
        (lines.as_str(), 200),
        ("/agent-api/tenant", 200),
        ("/agent-api/callerline?per_page=2", 200),
        ("/agent-api/callerline?page=0", 1001),
    ] {
        let body = json(app.get_as(demo::DEMO_PARTNER_ID, path).await).await;
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    let reader = roles::reader(&pool).await;
    let as_reader = roles::pool_as(&pool, &reader).await;
    for write in [
        "update caller_lines set name = 'x'",
        "insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated) \
         select partner_id, tenant_id, 1, 1 from caller_lines limit 1",
        "select nextval('listing_everything_epoch')",
        "select announce_everything()",
    ] {
        let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(write))
            .execute(&as_reader)
            .await;
        assert!(outcome.is_err(), "the reader cannot: {write}");
    }
    as_reader.close().await;
    app.stop().await;
}

/// A reader made by an older version of the documents (no grant on the applied migrations) used
/// to leave `/readyz` at 503 `"schema": "unknown"` for good, without a log line: every instance
/// out of the balancer. Now both say what to grant, once, and the grant alone makes it ready.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_grant_missing_is_named_and_granting_it_makes_the_instance_ready(pool: PgPool) {
    let reader = roles::reader(&pool).await;
    let revoke = format!("revoke select on _sqlx_migrations from \"{}\"", reader.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(revoke))
        .execute(&pool)
        .await
        .unwrap();
    let serving = spawn_serve(&roles::url_as(&pool, &reader), &[]);
    let ops = |path: &str| format!("http://127.0.0.1:{}{path}", serving.ops_port);
    let client = reqwest::Client::new();
    let ready = client.get(serving.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body = json(ready).await;
    assert_eq!(body["schema"], "unreadable", "{body}");
    assert!(
        body.get("action").is_none(),
        "no role names to strangers: {body}"
    );
    let detail = json(client.get(ops("/readyz")).send().await.unwrap()).await;
    let grant = format!("grant select on _sqlx_migrations to \"{}\"", reader.name);
    assert!(
        detail["action"].as_str().unwrap().contains(&grant),
        "{detail}"
    );
    // Said in the log once, not once a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = serving.log();
    let said = log
        .lines()
        .filter(|line| line.contains("grant select on _sqlx_migrations"))
        .count();
    assert_eq!(said, 1, "{log}");

    let granted = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
        .execute(&pool)
        .await
        .unwrap();
    eventually("ready once granted", || async {
        client
            .get(serving.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    assert!(granted.elapsed() < Duration::from_secs(3));
}

/// A role that may write lines and users, and (as Postgres grants by default) make temporary
/// objects, makes look-alikes of every object the schema's owner-run functions touch. Its
/// writes still count in the partner's `total`, and its bulk revocation (an `all`, past 200
/// partners) still reaches every instance: those functions search `pg_temp` last (migration
/// 1300). Before, the counts went to its temporary table and the epoch came from its temporary
/// sequence, so `total` stayed wrong and the revoked token was served for good.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_writers_temporary_look_alikes_change_no_total_and_hide_no_revocation(pool: PgPool) {
    let tenant = tenant(&pool, "云节点").await;
    let mut partners = Vec::new();
    for _ in 0..211 {
        partners.push(partner(&pool).await);
    }
    let watched = partners[0];
    for n in 0..3 {
        line(tenant, watched).nth(n).insert(&pool).await;
    }
    let app = TestApp::spawn(pool.clone()).await;
    app.await_listing_cache("live").await;
    let path = format!("/agent-api/tenant/{tenant}/callerline");
    let token = format!("Bearer {}", app.old_token(watched));
    let total =
        || async { json(app.request(&path, Some(&token)).await).await["meta"]["total"].clone() };
    assert_eq!(total().await, 3);

    let writer = roles::writer(&pool).await;
    let keep_default = format!(
        "grant temporary on database \"{}\" to \"{}\"",
        database_name(&pool),
        writer.name
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(keep_default))
        .execute(&pool)
        .await
        .unwrap();
    let mut session = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&roles::url_as(&pool, &writer))
            .await
            .unwrap()
    };
    sqlx::raw_sql(
        "create temporary table caller_line_count_deltas (partner_id uuid, tenant_id uuid, \
           listed bigint, unallocated bigint, created_at timestamptz default now(), \
           updated_at timestamptz default now()); \
         create temporary sequence listing_everything_epoch; \
         create temporary table tenants (like public.tenants); \
         create temporary table users (like public.users); \
         create temporary table caller_lines (like public.caller_lines)",
    )
    .execute(&mut session)
    .await
    .expect("the writer makes its look-alikes");
    for n in 0..5 {
        sqlx::query(
            "insert into public.caller_lines (tenant_id, partner_id, name, caller_number, call_line) \
             values ($1, $2, $3, $3, 1)",
        )
        .bind(tenant)
        .bind(watched)
        .bind(format!("writer's line {n}"))
        .execute(&mut session)
        .await
        .unwrap();
    }
    eventually("the writer's five lines counted", || async {
        total().await == 8
    })
    .await;
    let counted: i64 =
        sqlx::query_scalar("select listed from caller_line_counts where partner_id = $1")
            .bind(watched)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counted, 8, "the counts are the schema's, not the writer's");

    sqlx::query("update public.users set tokens_valid_after = now() - interval '30 s' where type = 'partner'")
        .execute(&mut session)
        .await
        .unwrap();
    let revoked = std::time::Instant::now();
    eventually("the bulk revocation is heard", || async {
        app.request(&path, Some(&token)).await.status() == 401
    })
    .await;
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "{:?}",
        revoked.elapsed()
    );
    drop(session);
    app.stop().await;
}

/// Every function that runs as its owner searches `pg_temp` last, so none can be steered by
/// what another role makes there (a function added later without it fails here).
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_owner_run_function_searches_temporary_objects_last(pool: PgPool) {
    let unsafe_functions: Vec<String> = sqlx::query_scalar(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'public' and p.prosecdef \
           and not coalesce('search_path=pg_catalog, public, pg_temp' = any(p.proconfig), false) \
         order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(unsafe_functions, Vec::<String>::new());
}
