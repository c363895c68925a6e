//! The partner behind a token, as `users` says (SPEC §4).

use sqlx::PgPool;

use super::pool::on_connection;
use crate::domain::partners::PartnerToken;

/// Whether the token's partner may be served: exists, is a partner, not deleted, not revoked.
pub async fn partner_is_active(pool: &PgPool, token: PartnerToken) -> Result<bool, sqlx::Error> {
    on_connection(pool, "partner_is_active", async |connection| {
        sqlx::query_scalar!(
            r#"select token_partner($1, $2) is not null as "active!""#,
            token.partner_id,
            token.issued_at,
        )
        .fetch_one(connection)
        .await
    })
    .await
}
