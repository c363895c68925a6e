//! `serve` needs no more than to read what it lists and to listen (SPEC §5; docs/operations.md gives
//! the role): every route works under such a role, and the role can change nothing.

use agent_api::config::LegacyMode;
use agent_api::store::{self, demo};
use sqlx::PgPool;

use crate::operator_sql::readme_block;
use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_api_serves_under_a_role_that_can_only_read(pool: PgPool) {
    demo::seed(&pool).await.unwrap();
    let reader = reader_role();
    let values = [
        ("reader", reader.clone()),
        ("password", "unused-with-trust-auth".to_string()),
        ("database", database_name(&pool)),
    ];
    let role_sql = readme_block("create role", &values);
    sqlx::raw_sql(sqlx::AssertSqlSafe(role_sql))
        .execute(&pool)
        .await
        .unwrap();
    let url = database_url(&pool).replacen("://postgres@", &format!("://{reader}@"), 1);
    let as_reader = store::pool(&url, &test_settings().database).unwrap();
    let app = TestApp::configured(as_reader.clone(), |s| {
        s.legacy.callerline = LegacyMode::On;
    })
    .await;
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
    let write = sqlx::query("update caller_lines set name = 'x'")
        .execute(&as_reader)
        .await;
    assert!(write.is_err(), "the reader cannot write");
    app.stop().await;
    as_reader.close().await;
    drop_role(&pool, &reader).await;
}
