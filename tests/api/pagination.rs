//! Paging and the query string of the lists (SPEC §2): meta at every edge, the query-string
//! rules, the page-size bound, and every page read in turn.

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::caller_lines::{lines_path, partner_with_lines};
use crate::support::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn pagination_edges_have_correct_meta_and_items(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 5).await;
    let (empty_tenant, _, _) = partner_with_lines(&pool, 0).await;
    let app = TestApp::spawn(pool).await;
    // (tenant, query, expected items, has_pages, total, last_page, current_page, per_page)
    let cases = [
        (empty_tenant, "", vec![], false, 0, 1, 1, "15"),
        (tenant, "?per_page=5", lines.clone(), false, 5, 1, 1, "5"),
        (
            tenant,
            "?per_page=2&page=1",
            lines[..2].to_vec(),
            true,
            5,
            3,
            1,
            "2",
        ),
        (
            tenant,
            "?per_page=2&page=3",
            lines[4..].to_vec(),
            true,
            5,
            3,
            3,
            "2",
        ),
        (tenant, "?per_page=2&page=4", vec![], true, 5, 3, 4, "2"),
        (empty_tenant, "?page=2", vec![], true, 0, 1, 2, "15"),
        (
            tenant,
            "?page=9223372036854775807",
            vec![],
            true,
            5,
            1,
            i64::MAX,
            "15",
        ),
        (
            tenant,
            "?page=9223372036854775807&per_page=100",
            vec![],
            true,
            5,
            1,
            i64::MAX,
            "100",
        ),
    ];
    for (tenant, query, items, has_pages, total, last_page, current_page, per_page) in cases {
        let response = app.get_as(partner, &lines_path(tenant, query)).await;
        assert_eq!(response.status(), 200, "{query}");
        let body = json(response).await;
        assert_eq!(ids(&body), items, "{query}");
        assert_eq!(
            body["meta"],
            json!({"has_pages": has_pages, "total": total, "last_page": last_page,
                   "current_page": current_page, "per_page": per_page}),
            "{query}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn query_string_rules_empty_last_wins_unknown_ignored(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 4).await;
    let app = TestApp::spawn(pool).await;
    let cases = [
        ("?page=&per_page=", lines.clone()),
        ("?per_page=1&per_page=2", lines[..2].to_vec()),
        ("?per_page=x&per_page=2&page=2", lines[2..].to_vec()),
        ("?per_page=2&page=2&page=", lines[..2].to_vec()),
        ("?foo=bar&per_page=3&Page=9", lines[..3].to_vec()),
    ];
    for (query, expected) in cases {
        let body = json(app.get_as(partner, &lines_path(tenant, query)).await).await;
        assert_eq!(body["code"], 200, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_page_size_limit_is_configurable(pool: PgPool) {
    let (tenant, partner, lines) = partner_with_lines(&pool, 3).await;
    let app = TestApp::configured(pool, |settings| {
        settings.api.max_per_page = 2;
        settings.api.default_per_page = 1;
    })
    .await;
    let body = json(app.get_as(partner, &lines_path(tenant, "")).await).await;
    assert_eq!(ids(&body), lines[..1]);
    assert_eq!(body["meta"]["per_page"], "1");
    let message = assert_error(
        app.get_as(partner, &lines_path(tenant, "?per_page=3"))
            .await,
        200,
        1001,
    )
    .await;
    assert!(message.contains("1 到 2"), "{message}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_page_read_in_turn_is_the_whole_list_in_order(pool: PgPool) {
    // Pages past the middle are read from the far end of the index: both ways must agree.
    let tenant = tenant(&pool, "云节点").await;
    let partner = partner(&pool).await;
    let alice = user(&pool, partner, "customer", "alice").await;
    for n in 0..23_i64 {
        // Ties on created_at in threes, so the id tiebreak is exercised in both directions.
        let new_line = line(tenant, partner).nth(n - n % 3);
        let new_line = if n % 2 == 0 {
            new_line.user(alice)
        } else {
            new_line
        };
        new_line.insert(&pool).await;
    }
    let expected: Vec<(Uuid, bool)> = sqlx::query_as(
        "select id, user_id is not null from caller_lines where partner_id = $1 \
         order by created_at, id",
    )
    .bind(partner)
    .fetch_all(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool).await;
    // (filter, which lines it keeps: Some(allocated) or None for all)
    let filters = [
        (String::new(), None),
        ("&unused=1".to_string(), Some(false)),
        ("&unused=0".to_string(), Some(true)),
        (format!("&user_id={alice}"), Some(true)),
    ];
    for (filter, keeps) in filters {
        let wanted: Vec<Uuid> = expected
            .iter()
            .filter(|(_, allocated)| keeps.is_none_or(|kept| kept == *allocated))
            .map(|(id, _)| *id)
            .collect();
        for per_page in 1..=7_usize {
            let last_page = wanted.len().div_ceil(per_page).max(1);
            let mut read = Vec::new();
            for page in 1..=last_page + 1 {
                let query = format!("?per_page={per_page}&page={page}{filter}");
                let body = json(app.get_as(partner, &lines_path(tenant, &query)).await).await;
                assert_eq!(body["meta"]["total"], wanted.len(), "{query}");
                assert_eq!(body["meta"]["last_page"], last_page, "{query}");
                let items = ids(&body);
                if page > last_page {
                    assert!(items.is_empty(), "{query}: past the end");
                }
                read.extend(items);
            }
            assert_eq!(read, wanted, "per_page={per_page}{filter}");
        }
    }
}
