//! Partners (伙伴) as the API meets them: through the tokens they present (SPEC §4).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a verified token claims. Whether its partner may be served is the database's answer:
/// the partner exists, is a partner, is not deleted, and the token is not revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerToken {
    pub partner_id: Uuid,
    pub issued_at: DateTime<Utc>,
}
