//! `agent-api seed-demo`: the demo tenant, partner, customer and five lines (SPEC §5).

use sqlx::PgPool;
use uuid::Uuid;

/// The demo partner; `token issue --partner` with this id gives a token for the demo.
pub const DEMO_PARTNER_ID: Uuid = Uuid::from_u128(1);
pub const DEMO_TENANT_ID: Uuid = Uuid::from_u128(0xf2d216a3_9ea5_4f1d_a170_ce9ebed49eaf);

/// Idempotent; the statements run as one transaction.
pub async fn seed(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(include_str!("demo.sql"))
        .execute(pool)
        .await
        .map(drop)
}
