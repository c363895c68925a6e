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

/// Whether a partner's tokens are accepted, as `users` says: a row of `type = 'partner'`, not
/// deleted, and tokens issued before `tokens_valid_after` revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active {
        tokens_valid_after: Option<DateTime<Utc>>,
    },
    /// Unknown, not a partner, or deleted.
    Rejected,
}

impl Standing {
    /// A user's row: whether it is an active partner (a partner, not deleted), and from when
    /// its tokens count.
    pub fn of(active: bool, tokens_valid_after: Option<DateTime<Utc>>) -> Self {
        match active {
            true => Self::Active { tokens_valid_after },
            false => Self::Rejected,
        }
    }

    /// The SQL function `token_partner(sub, iat)` says the same.
    pub fn accepts(&self, token: &PartnerToken) -> bool {
        match self {
            Self::Active { tokens_valid_after } => {
                tokens_valid_after.is_none_or(|after| after <= token.issued_at)
            }
            Self::Rejected => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn tokens_issued_before_the_revocation_instant_are_refused() {
        let at = |seconds| Utc.timestamp_opt(seconds, 0).unwrap();
        let token = PartnerToken {
            partner_id: Uuid::nil(),
            issued_at: at(100),
        };
        let revoked_at = |seconds| Standing::Active {
            tokens_valid_after: Some(at(seconds)),
        };
        assert!(
            Standing::Active {
                tokens_valid_after: None
            }
            .accepts(&token)
        );
        assert!(
            revoked_at(100).accepts(&token),
            "issued at the instant: accepted"
        );
        assert!(revoked_at(99).accepts(&token));
        assert!(!revoked_at(101).accepts(&token));
        assert!(!Standing::Rejected.accepts(&token));
    }
}
