//! The caller-line list (SPEC §2) in one round trip: the partner's standing, the tenant, the
//! total and one page come back together, so a request costs one statement.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Error;
use super::database::{Database, Watermark};
use super::postgres::literal;
use super::postgres::pool::returned;
use crate::domain::caller_lines::{CallerLine, LineUser, UserType};
use crate::domain::page::Listing;
use crate::domain::partners::PartnerToken;
use crate::domain::query::{LineFilter, PageRequest};
use crate::domain::tenants::Tenant;

/// A page of the partner's lines on a tenant, and the tenant they show.
#[derive(Debug)]
pub struct TenantLines {
    pub tenant: Tenant,
    pub lines: Listing<CallerLine>,
}

/// The list statement as the schema keeps it (migration 1500), for a message of its own:
/// Postgres then plans only the call, the function keeping its statement's plan.
const CALL_LIST_CALLER_LINES: &str = "select * from list_caller_lines($1, $2, $3, $4, $5, $6, $7)";

/// One row per line of the page, or a single row with null line columns when the page is
/// empty; the first four columns are the same on every row. (Read by name from a row of the
/// simple protocol: the names carry the build-time check's `!` and `?`, as the function's
/// columns do.)
#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(rename = "partner_ok!")]
    partner_ok: bool,
    tenant_name: Option<String>,
    #[sqlx(rename = "total!")]
    total: i64,
    #[sqlx(rename = "id?")]
    id: Option<Uuid>,
    #[sqlx(rename = "name?")]
    name: Option<String>,
    #[sqlx(rename = "call_line?")]
    call_line: Option<i32>,
    #[sqlx(rename = "deadline_at?")]
    deadline_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "available_time?")]
    available_time: Option<i64>,
    #[sqlx(rename = "begin_at?")]
    begin_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "caller_number?")]
    caller_number: Option<String>,
    #[sqlx(rename = "created_at?")]
    created_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "updated_at?")]
    updated_at: Option<DateTime<Utc>>,
    description_server: Option<String>,
    call_number: Option<String>,
    #[sqlx(rename = "user_name?")]
    user_name: Option<String>,
    user_email: Option<String>,
    user_phone: Option<String>,
    #[sqlx(rename = "user_type?")]
    user_type: Option<String>,
}

/// `None` when the tenant is missing or soft-deleted (or `tenant_id` names none). Read on a
/// standby that has replayed to `watermark`, or on the primary.
pub async fn list(
    database: &Database,
    watermark: Watermark,
    token: PartnerToken,
    tenant_id: Option<Uuid>,
    filter: LineFilter,
    page: PageRequest,
) -> Result<Option<TenantLines>, Error> {
    // One statement, planned once per connection (the pool forces generic plans), whose cost
    // does not grow with the partner's size:
    // - `total` sums the pair's few rows of caller_line_count_deltas (kept by the statement
    //   triggers of migration 0800), or counts one user's lines;
    // - the page is read from whichever end of the listing index is nearer, so the last page
    //   of 100,000 lines costs what the first does;
    // - rows are filtered by the path's ids directly (index conditions the planner can see);
    //   a rejected partner or missing tenant discards them in `assemble`.
    let rows = database
        .read(watermark, "list_caller_lines", async |session| {
            let rows = match session.one_message() {
                false => {
                    sqlx::query_file_as!(
                        Row,
                        "src/store/sql/list_caller_lines.sql",
                        token.partner_id,
                        token.issued_at,
                        tenant_id,
                        filter.user_id,
                        filter.unused,
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
                        literal::value(tenant_id.as_ref()),
                        literal::value(filter.user_id.as_ref()),
                        literal::value(filter.unused.as_ref()),
                        literal::value(Some(&page.per_page)),
                        literal::value(Some(&page.offset())),
                    ];
                    session
                        .fetch_written(CALL_LIST_CALLER_LINES, &values)
                        .await?
                }
            };
            Ok(returned(rows))
        })
        .await?;
    assemble(tenant_id, rows)
}

/// The most count rows any (partner, tenant) pair holds: what a `total` sums, kept small by the
/// triggers' folding (migrations 0800, 1200); a number that grows says folding has stopped.
pub async fn most_count_rows_of_a_pair(database: &Database) -> Result<i64, sqlx::Error> {
    database
        .on_primary_in_transaction("most_count_rows_of_a_pair", async |connection| {
            sqlx::query_scalar!(
                r#"select coalesce(max(rows), 0) as "rows!" from (
                   select count(*) as rows from caller_line_count_deltas
                   group by partner_id, tenant_id) as per_pair"#
            )
            .fetch_one(connection)
            .await
        })
        .await
}

/// Rebuilds the flat rows into the domain's nested lines.
fn assemble(tenant_id: Option<Uuid>, rows: Vec<Row>) -> Result<Option<TenantLines>, Error> {
    // The statement always yields a row; the impossible is treated as "no partner".
    let Some(first) = rows.first().filter(|first| first.partner_ok) else {
        return Err(Error::PartnerRejected);
    };
    let (Some(tenant_id), Some(tenant_name)) = (tenant_id, first.tenant_name.clone()) else {
        return Ok(None);
    };
    let total = first.total;
    let items = rows.into_iter().filter_map(line_from_row).collect();
    Ok(Some(TenantLines {
        tenant: Tenant {
            id: tenant_id,
            name: tenant_name,
        },
        lines: Listing { total, items },
    }))
}

fn line_from_row(row: Row) -> Option<CallerLine> {
    let user = match (
        row.user_name,
        row.user_type.as_deref().and_then(UserType::parse),
    ) {
        (Some(name), Some(user_type)) => Some(LineUser {
            name,
            email: row.user_email,
            phone: row.user_phone,
            user_type,
        }),
        _ => None,
    };
    Some(CallerLine {
        id: row.id?,
        name: row.name?,
        user,
        call_line: row.call_line?,
        deadline_at: row.deadline_at,
        available_time: row.available_time?,
        begin_at: row.begin_at,
        caller_number: row.caller_number?,
        created_at: row.created_at?,
        updated_at: row.updated_at?,
        description_server: row.description_server,
        call_number: row.call_number,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// The row of an empty page: the first three columns and nothing else.
    fn empty_page(partner_ok: bool, tenant_name: Option<&str>, total: i64) -> Row {
        Row {
            partner_ok,
            tenant_name: tenant_name.map(str::to_owned),
            total,
            id: None,
            name: None,
            call_line: None,
            deadline_at: None,
            available_time: None,
            begin_at: None,
            caller_number: None,
            created_at: None,
            updated_at: None,
            description_server: None,
            call_number: None,
            user_name: None,
            user_email: None,
            user_phone: None,
            user_type: None,
        }
    }

    fn line_row(id: u128, user: Option<(&str, &str)>) -> Row {
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Row {
            id: Some(Uuid::from_u128(id)),
            name: Some(format!("line {id}")),
            call_line: Some(3),
            available_time: Some(60),
            begin_at: Some(at),
            caller_number: Some("c".into()),
            created_at: Some(at),
            updated_at: Some(at),
            user_name: user.map(|(name, _)| name.to_owned()),
            user_type: user.map(|(_, kind)| kind.to_owned()),
            ..empty_page(true, Some("云节点"), 2)
        }
    }

    const TENANT: Option<Uuid> = Some(Uuid::from_u128(7));

    #[test]
    fn an_empty_page_keeps_its_total_and_has_no_lines() {
        let found = assemble(TENANT, vec![empty_page(true, Some("云节点"), 40)])
            .unwrap()
            .unwrap();
        assert_eq!(found.tenant.id, TENANT.unwrap());
        assert_eq!(found.tenant.name, "云节点");
        assert_eq!(found.lines.total, 40);
        assert!(found.lines.items.is_empty());
    }

    #[test]
    fn a_rejected_partner_outranks_a_missing_tenant() {
        let outcome = assemble(TENANT, vec![empty_page(false, None, 0)]);
        assert!(matches!(outcome, Err(Error::PartnerRejected)));
        assert!(matches!(
            assemble(TENANT, vec![]),
            Err(Error::PartnerRejected)
        ));
    }

    #[test]
    fn a_missing_or_unnamed_tenant_is_none() {
        assert!(
            assemble(TENANT, vec![empty_page(true, None, 0)])
                .unwrap()
                .is_none()
        );
        let no_id = assemble(None, vec![empty_page(true, Some("云节点"), 0)]);
        assert!(no_id.unwrap().is_none());
    }

    #[test]
    fn lines_keep_their_order_and_a_line_without_a_user_has_none() {
        let rows = vec![line_row(1, None), line_row(2, Some(("客户甲", "customer")))];
        let found = assemble(TENANT, rows).unwrap().unwrap();
        let lines = &found.lines.items;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].id, Uuid::from_u128(1));
        assert_eq!(lines[0].user, None);
        let user = lines[1].user.as_ref().unwrap();
        assert_eq!(
            (user.name.as_str(), user.user_type),
            ("客户甲", UserType::Customer)
        );
        assert_eq!(
            lines[1].available_at(),
            Some(lines[1].begin_at.unwrap() + chrono::TimeDelta::seconds(60))
        );
    }
}
