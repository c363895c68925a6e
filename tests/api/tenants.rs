//! GET /agent-api/tenant (SPEC §2b): the partner's cloud nodes, the way off the legacy route.

use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_tenant_list_shows_tenants_with_listed_lines_and_the_default(pool: PgPool) {
    let default = default_tenant(&pool, "默认节点").await;
    let with_lines = tenant(&pool, "有线路").await;
    let only_split = tenant(&pool, "只有拆分线路").await;
    let deleted = tenant(&pool, "已删除").await;
    let others = tenant(&pool, "别人的").await;
    let partner = partner(&pool).await;
    let stranger = crate::support::partner(&pool).await;
    let parent = line(with_lines, partner).insert(&pool).await;
    line(only_split, partner)
        .split_from(parent)
        .insert(&pool)
        .await;
    line(deleted, partner).insert(&pool).await;
    line(others, stranger).insert(&pool).await;
    soft_delete_tenant(&pool, deleted).await;
    let app = TestApp::spawn(pool).await;

    let body = json(app.get_as(partner, "/agent-api/tenant").await).await;
    assert_eq!(body["code"], 200);
    assert_eq!(body["message"], "查看云节点成功");
    assert_eq!(
        body["data"],
        json!([
            {"id": default, "name": "默认节点", "is_default": true},
            {"id": with_lines, "name": "有线路", "is_default": false},
        ])
    );
    assert_eq!(
        body["meta"],
        json!({"has_pages": false, "total": 2, "last_page": 1, "current_page": 1, "per_page": "15"})
    );
    // A partner with no lines still learns the default tenant.
    let lonely = crate::support::partner(&app.pool).await;
    let body = json(
        app.get_as(lonely, "/agent-api/tenant?per_page=1&page=1")
            .await,
    )
    .await;
    assert_eq!(
        body["data"],
        json!([{"id": default, "name": "默认节点", "is_default": true}])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_tenant_list_shares_the_list_rules(pool: PgPool) {
    let partner = partner(&pool).await;
    let mut tenants = Vec::new();
    for n in 0..3 {
        let tenant = tenant(&pool, &format!("节点{n}")).await;
        line(tenant, partner).insert(&pool).await;
        tenants.push(tenant);
    }
    let app = TestApp::spawn(pool).await;
    let body = json(
        app.get_as(partner, "/agent-api/tenant?per_page=2&page=2&user_id=x")
            .await,
    )
    .await;
    assert_eq!(body["meta"]["total"], 3);
    assert_eq!(body["meta"]["last_page"], 2);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_error(
        app.get_as(partner, "/agent-api/tenant?page=0").await,
        200,
        1001,
    )
    .await;
    assert_error(app.get("/agent-api/tenant").await, 401, 401).await;
}
