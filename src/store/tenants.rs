//! Tenants: the default one (legacy route, SPEC §3) and a partner's list (SPEC §2b).

use uuid::Uuid;

use super::Error;
use super::database::Database;
use super::postgres::literal;
use super::postgres::pool::returned;
use crate::domain::page::Listing;
use crate::domain::partners::PartnerToken;
use crate::domain::query::PageRequest;
use crate::domain::tenants::TenantSummary;

/// The default-tenant statement (`sqlx::query_file_as!` checks it at build time).
const DEFAULT_TENANT_ID: &str = include_str!("sql/default_tenant_id.sql");

#[derive(sqlx::FromRow)]
struct TenantId {
    id: Uuid,
}

/// The non-deleted default tenant's id, if there is one.
pub async fn default_tenant_id(database: &Database) -> Result<Option<Uuid>, sqlx::Error> {
    let rows = database
        .on_primary("default_tenant_id", async |session| {
            match session.one_message() {
                false => {
                    sqlx::query_file_as!(TenantId, "src/store/sql/default_tenant_id.sql")
                        .fetch_all(session)
                        .await
                }
                true => session.fetch_written(DEFAULT_TENANT_ID, &[]).await,
            }
        })
        .await?;
    Ok(rows.first().map(|row| row.id))
}

/// The partner's tenants (SPEC §2b), one page of them.
pub async fn list_for_partner(
    database: &Database,
    token: PartnerToken,
    page: PageRequest,
) -> Result<Listing<TenantSummary>, Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(rename = "partner_ok!")]
        partner_ok: bool,
        #[sqlx(rename = "total!")]
        total: i64,
        #[sqlx(rename = "id?")]
        id: Option<Uuid>,
        #[sqlx(rename = "name?")]
        name: Option<String>,
        #[sqlx(rename = "is_default?")]
        is_default: Option<bool>,
    }
    const LIST_TENANTS: &str = include_str!("sql/list_tenants.sql");
    let rows = database
        .on_primary("list_tenants", async |session| {
            let rows = match session.one_message() {
                false => {
                    sqlx::query_file_as!(
                        Row,
                        "src/store/sql/list_tenants.sql",
                        token.partner_id,
                        token.issued_at,
                        page.per_page,
                        page.offset(),
                    )
                    .fetch_all(session)
                    .await?
                }
                true => {
                    let values = [
                        literal::value(Some(&token.partner_id)),
                        literal::value(Some(&token.issued_at)),
                        literal::value(Some(&page.per_page)),
                        literal::value(Some(&page.offset())),
                    ];
                    session.fetch_written(LIST_TENANTS, &values).await?
                }
            };
            Ok(returned(rows))
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
