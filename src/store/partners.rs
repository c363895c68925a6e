//! The partner behind a token, as `users` says (SPEC §4).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::Database;
use super::postgres::literal;
use super::postgres::pool::returned;
use crate::domain::partners::{PartnerRow, Refused, Standing};

/// The partner-standing statement (`sqlx::query_file_as!` checks it at build time).
const PARTNER_STANDING: &str = include_str!("sql/partner_standing.sql");

#[derive(sqlx::FromRow)]
struct StandingRow {
    #[sqlx(rename = "active!")]
    active: bool,
    tokens_valid_after: Option<DateTime<Utc>>,
}

/// Whether `partner`'s tokens are accepted, and from when: a partner, not deleted.
pub async fn standing(database: &Database, partner: Uuid) -> Result<Standing, sqlx::Error> {
    let rows = database
        .on_primary("partner_standing", async |session| {
            match session.one_message() {
                false => {
                    sqlx::query_file_as!(StandingRow, "src/store/sql/partner_standing.sql", partner)
                        .fetch_all(session)
                        .await
                }
                true => {
                    let values = [literal::value(Some(&partner))];
                    session.fetch_written(PARTNER_STANDING, &values).await
                }
            }
        })
        .await?;
    Ok(rows.first().map_or(Standing::Rejected, |row| {
        Standing::of(row.active, row.tokens_valid_after)
    }))
}

/// Every partner's standing (at most `limit` partners), in one statement: what memory is filled
/// with when the feed listens anew, rather than by one statement per partner as they arrive.
pub async fn all_standings(
    database: &Database,
    limit: i64,
) -> Result<Vec<(Uuid, Standing)>, sqlx::Error> {
    let rows = database
        .on_primary_in_transaction("all_partner_standings", async |connection| {
            sqlx::query!(
                r#"select id, deleted_at is null as "active!", tokens_valid_after
               from users where type = 'partner' order by id limit $1"#,
                limit,
            )
            .fetch_all(connection)
            .await
            .map(returned)
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.id, Standing::of(row.active, row.tokens_valid_after)))
        .collect())
}

/// Which check refuses `partner`'s token issued at `issued_at` (any token, when `None`), if one
/// does: for operators' commands, which say why.
pub async fn why_refused(
    database: &Database,
    partner: Uuid,
    issued_at: Option<DateTime<Utc>>,
) -> Result<Option<Refused>, sqlx::Error> {
    let row = database
        .on_primary_in_transaction("partner_row", async |connection| {
            sqlx::query_as!(
                PartnerRow,
                r#"select type as user_type, deleted_at, tokens_valid_after
                   from users where id = $1"#,
                partner,
            )
            .fetch_optional(connection)
            .await
        })
        .await?;
    Ok(PartnerRow::refuses(row.as_ref(), issued_at))
}
