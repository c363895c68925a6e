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

/// Which check refuses a partner's token, for operators (`token inspect`, `token issue`):
/// partners themselves only ever see the same 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no user has this id")]
    Unknown,
    #[error("this user is a {0}, not a partner")]
    NotAPartner(String),
    #[error("this partner was deleted at {0}")]
    Deleted(DateTime<Utc>),
    #[error(
        "tokens issued before {valid_after} are revoked, and this one was issued at {issued_at}"
    )]
    Revoked {
        valid_after: DateTime<Utc>,
        issued_at: DateTime<Utc>,
    },
}

/// A user's row, as the checks of SPEC §4 read it.
pub struct PartnerRow {
    pub user_type: String,
    pub deleted_at: Option<DateTime<Utc>>,
    pub tokens_valid_after: Option<DateTime<Utc>>,
}

impl PartnerRow {
    /// The first check that refuses a token issued at `issued_at` (or any token, when `None`):
    /// the same checks, in the same order, as `token_partner(sub, iat)`.
    pub fn refuses(row: Option<&Self>, issued_at: Option<DateTime<Utc>>) -> Option<Refused> {
        let Some(row) = row else {
            return Some(Refused::Unknown);
        };
        if row.user_type != "partner" {
            return Some(Refused::NotAPartner(row.user_type.clone()));
        }
        if let Some(deleted_at) = row.deleted_at {
            return Some(Refused::Deleted(deleted_at));
        }
        match (row.tokens_valid_after, issued_at) {
            (Some(valid_after), Some(issued_at)) if issued_at < valid_after => {
                Some(Refused::Revoked {
                    valid_after,
                    issued_at,
                })
            }
            _ => None,
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
