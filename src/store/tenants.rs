//! Tenants: the default one (legacy route, SPEC §3) and a partner's list (SPEC §2b).

use uuid::Uuid;

use super::Error;
use super::database::Database;
use super::postgres::pool::returned;
use crate::domain::page::Listing;
use crate::domain::partners::PartnerToken;
use crate::domain::query::PageRequest;
use crate::domain::tenants::TenantSummary;

/// The non-deleted default tenant's id, if there is one.
pub async fn default_tenant_id(database: &Database) -> Result<Option<Uuid>, sqlx::Error> {
    database
        .on_primary("default_tenant_id", async |connection| {
            sqlx::query_scalar!("select id from tenants where is_default and deleted_at is null")
                .fetch_optional(connection)
                .await
        })
        .await
}

/// The partner's tenants (SPEC §2b), one page of them.
pub async fn list_for_partner(
    database: &Database,
    token: PartnerToken,
    page: PageRequest,
) -> Result<Listing<TenantSummary>, Error> {
    struct Row {
        partner_ok: bool,
        total: i64,
        id: Option<Uuid>,
        name: Option<String>,
        is_default: Option<bool>,
    }
    let rows = database
        .on_primary("list_tenants", async |connection| {
            sqlx::query_as!(
                Row,
                r#"
        with partner as (select token_partner($1, $2) as id),
        visible as (
            select t.id, t.name, t.is_default, t.created_at from tenants t
            where t.deleted_at is null
              and (select id from partner) is not null
              and (t.is_default or exists (
                  select 1 from caller_lines l
                  where l.partner_id = (select id from partner) and l.tenant_id = t.id
                    and l.parent_id is null and l.deleted_at is null))
        ),
        page as (
            select * from visible order by created_at, id limit $3 offset $4
        )
        select
            (select id from partner) is not null as "partner_ok!",
            (select count(*) from visible) as "total!",
            p.id as "id?", p.name as "name?", p.is_default as "is_default?"
        from (select 1) as one
        left join page p on true
        order by p.created_at, p.id
        "#,
                token.partner_id,
                token.issued_at,
                page.per_page,
                page.offset(),
            )
            .fetch_all(connection)
            .await
            .map(returned)
        })
        .await?;
    let Some(first) = rows.first().filter(|row| row.partner_ok) else {
        return Err(Error::PartnerRejected);
    };
    let total = first.total;
    let items = rows
        .into_iter()
        .filter_map(|row| {
            Some(TenantSummary {
                id: row.id?,
                name: row.name?,
                is_default: row.is_default?,
            })
        })
        .collect();
    Ok(Listing { total, items })
}
