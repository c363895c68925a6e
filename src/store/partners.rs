//! The partner behind a token, as `users` says (SPEC §4).

use sqlx::PgPool;
use uuid::Uuid;

use super::pool::on_connection;
use crate::domain::partners::Standing;

/// Whether `partner`'s tokens are accepted, and from when: a partner, not deleted.
pub async fn standing(pool: &PgPool, partner: Uuid) -> Result<Standing, sqlx::Error> {
    let row = on_connection(pool, "partner_standing", async |connection| {
        sqlx::query!(
            r#"select type = 'partner' and deleted_at is null as "active!", tokens_valid_after
               from users where id = $1"#,
            partner,
        )
        .fetch_optional(connection)
        .await
    })
    .await?;
    Ok(match row {
        Some(row) if row.active => Standing::Active {
            tokens_valid_after: row.tokens_valid_after,
        },
        _ => Standing::Rejected,
    })
}
