//! What each write announces on the change feed's channel (migrations 0800, 1200): the
//! narrowest scope that covers what it changed, within Postgres's 8000-byte payload, and nothing
//! for writes no page shows.

use std::collections::BTreeSet;
use std::time::Duration;

use agent_api::store::feed::announcements::{Announcement, CHANNEL, Heartbeats, SchemaTags, Scope};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::support::*;

async fn listen(pool: &PgPool) -> PgListener {
    let mut listener = PgListener::connect_with(pool).await.unwrap();
    listener.listen(CHANNEL).await.unwrap();
    listener
}

/// The scopes announced by `statement`, each as a sorted set of `kind id[/id]` words: read as
/// an instance reads them, each verified against the schema's tag (the previous release's
/// untagged `all` passed over).
async fn announced(pool: &PgPool, listener: &mut PgListener, statement: &str) -> Vec<String> {
    let key: Vec<u8> = sqlx::query_scalar("select key from listing_announcement_key")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut tags = SchemaTags::new(&key);
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let mut heard = Vec::new();
    // Notifications are delivered at commit, before the statement's answer: a short quiet
    // spell after it means there are no more.
    while let Ok(Ok(notification)) =
        tokio::time::timeout(Duration::from_millis(200), listener.recv()).await
    {
        assert!(
            notification.payload().len() < 8000,
            "within Postgres's limit"
        );
        match Announcement::read(notification.payload(), &Heartbeats::new(), &mut tags) {
            Announcement::Changed(scope) => heard.push(describe(&scope)),
            Announcement::Legacy => {}
            other => panic!("{statement} announced {other:?}"),
        }
    }
    heard
}

/// Runs each statement in turn; each announces exactly what it is paired with.
async fn assert_announces(
    pool: &PgPool,
    listener: &mut PgListener,
    cases: impl IntoIterator<Item = (String, Vec<String>)>,
) {
    for (statement, expected) in cases {
        assert_eq!(
            announced(pool, listener, &statement).await,
            expected,
            "{statement}"
        );
    }
}

fn describe(scope: &Scope) -> String {
    let words: BTreeSet<String> = match scope {
        Scope::Pairs(pairs) => pairs.iter().map(|(p, t)| format!("pair {p}/{t}")).collect(),
        Scope::Partners(partners) => partners.iter().map(|p| format!("partner {p}")).collect(),
        Scope::Tenants(tenants) => tenants.iter().map(|t| format!("tenant {t}")).collect(),
        Scope::Everything => ["everything".to_string()].into(),
    };
    words.into_iter().collect::<Vec<_>>().join(" ")
}

fn pair(partner: Uuid, tenant: Uuid) -> String {
    format!("pair {partner}/{tenant}")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn line_writes_announce_the_pairs_whose_pages_they_change(pool: PgPool) {
    let tenant_t = tenant(&pool, "甲").await;
    let tenant_u = tenant(&pool, "乙").await;
    let partner_p = partner(&pool).await;
    let line_1 = line(tenant_t, partner_p).insert(&pool).await;
    let split = line(tenant_t, partner_p)
        .split_from(line_1)
        .insert(&pool)
        .await;
    let mut listener = listen(&pool).await;
    let cases = [
        (
            format!("update caller_lines set name = '改' where id = '{line_1}'"),
            vec![pair(partner_p, tenant_t)],
        ),
        (
            format!("update caller_lines set tenant_id = '{tenant_u}' where id = '{line_1}'"),
            vec![format!(
                "{} {}",
                pair(partner_p, tenant_t).min(pair(partner_p, tenant_u)),
                pair(partner_p, tenant_t).max(pair(partner_p, tenant_u))
            )],
        ),
        // A split line is in no list: renaming it changes no page.
        (
            format!("update caller_lines set name = '拆' where id = '{split}'"),
            vec![],
        ),
        (
            format!("update caller_lines set deleted_at = now() where id = '{line_1}'"),
            vec![pair(partner_p, tenant_u)],
        ),
        // A deleted line is in no list either.
        (
            format!("update caller_lines set name = '删' where id = '{line_1}'"),
            vec![],
        ),
    ];
    assert_announces(&pool, &mut listener, cases).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn user_writes_announce_their_partner_and_only_for_what_the_api_reads(pool: PgPool) {
    let partner_p = partner(&pool).await;
    let partner_q = partner(&pool).await;
    let customer = user(&pool, partner_p, "customer", "客户").await;
    // The rest of the platform shares `users`: its own columns are none of the API's business.
    sqlx::raw_sql("alter table users add column last_login_at timestamptz")
        .execute(&pool)
        .await
        .unwrap();
    let mut listener = listen(&pool).await;
    let partner_of = |id: Uuid| format!("partner {id}");
    let cases = [
        (
            format!("update users set name = '新名' where id = '{customer}'"),
            vec![partner_of(partner_p)],
        ),
        (
            format!("update users set tokens_valid_after = now() where id = '{partner_q}'"),
            vec![partner_of(partner_q)],
        ),
        (
            format!("update users set last_login_at = now() where id = '{customer}'"),
            vec![],
        ),
        (
            "update users set updated_at = now() - interval '1 day'".to_string(),
            vec![],
        ),
        (
            format!("update users set partner_id = '{partner_q}' where id = '{customer}'"),
            vec![format!(
                "{} {}",
                partner_of(partner_p).min(partner_of(partner_q)),
                partner_of(partner_p).max(partner_of(partner_q))
            )],
        ),
    ];
    assert_announces(&pool, &mut listener, cases).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tenant_writes_announce_the_tenant(pool: PgPool) {
    let tenant_t = tenant(&pool, "甲").await;
    let mut listener = listen(&pool).await;
    for statement in [
        format!("update tenants set name = '改名' where id = '{tenant_t}'"),
        format!("update tenants set is_default = true where id = '{tenant_t}'"),
        format!("update tenants set deleted_at = now() where id = '{tenant_t}'"),
    ] {
        assert_eq!(
            announced(&pool, &mut listener, &statement).await,
            [format!("tenant {tenant_t}")],
            "{statement}"
        );
    }
    let untouched = format!("update tenants set updated_at = now() where id = '{tenant_t}'");
    assert!(announced(&pool, &mut listener, &untouched).await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_statement_over_many_pairs_is_announced_by_partners_then_as_everything(pool: PgPool) {
    let partner_p = partner(&pool).await;
    sqlx::raw_sql(
        "insert into tenants (id, name) select gen_random_uuid(), 't' || n \
         from generate_series(1, 150) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut listener = listen(&pool).await;
    let insert_per_tenant = |partners: &str| {
        format!(
            "insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) \
             select gen_random_uuid(), t.id, p.id, 'l', 'c', 1 from tenants t, users p \
             where p.id in ({partners})"
        )
    };
    // 150 pairs of one partner: more than a payload holds, so the partner is named.
    assert_eq!(
        announced(
            &pool,
            &mut listener,
            &insert_per_tenant(&format!("'{partner_p}'"))
        )
        .await,
        [format!("partner {partner_p}")]
    );
    let many_partners = "insert into users (id, type, name) \
        select gen_random_uuid(), 'partner', 'p' || n from generate_series(1, 250) n";
    assert_eq!(
        announced(&pool, &mut listener, many_partners).await,
        ["everything"]
    );
    // 251 partners' lines: everything.
    let all_partners = "select id from users where type = 'partner'";
    assert_eq!(
        announced(&pool, &mut listener, &insert_per_tenant(all_partners)).await,
        ["everything"]
    );
}
