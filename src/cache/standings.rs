//! Partners' standing (SPEC §4: a partner, not deleted, tokens not revoked) kept in memory, so a
//! request whose page is kept costs the database nothing, whatever token it carries: a fresh
//! token per call is answered from memory like any other.

use std::sync::Arc;

use uuid::Uuid;

use super::freshness::{Freshness, Stamp};
use crate::domain::partners::Standing;

/// Partners remembered at most (the least used are forgotten first).
const MAX_PARTNERS: usize = 100_000;

pub struct Standings {
    known: quick_cache::sync::Cache<Uuid, (Standing, Stamp)>,
    freshness: Arc<Freshness>,
}

pub enum Lookup<'c> {
    Known(Standing),
    /// Not known, or no longer current: read it, then `keep` it.
    Unknown(Pending<'c>),
    /// Memory is not trusted: read it, keep nothing.
    Bypass,
}

pub struct Pending<'c> {
    standings: &'c Standings,
    partner: Uuid,
    read_at: Stamp,
}

impl Pending<'_> {
    /// Keeps what was read unless the partner was announced as changed meanwhile.
    pub fn keep(self, standing: Standing) {
        let Self {
            standings,
            partner,
            read_at,
        } = self;
        if standings.freshness.partner_is_current(partner, read_at) {
            standings.known.insert(partner, (standing, read_at));
        }
    }
}

impl Standings {
    pub fn new(freshness: Arc<Freshness>) -> Self {
        Self {
            known: quick_cache::sync::Cache::new(MAX_PARTNERS),
            freshness,
        }
    }

    pub fn lookup(&self, partner: Uuid) -> Lookup<'_> {
        let read_at = self.freshness.stamp();
        if !self.freshness.is_trusted() {
            return Lookup::Bypass;
        }
        match self.known.get(&partner) {
            Some((standing, kept_at)) if self.freshness.partner_is_current(partner, kept_at) => {
                Lookup::Known(standing)
            }
            _ => Lookup::Unknown(Pending {
                standings: self,
                partner,
                read_at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::changes::{Change, Scope};

    const P: Uuid = Uuid::from_u128(1);
    const Q: Uuid = Uuid::from_u128(2);

    fn known(standings: &Standings, partner: Uuid) -> Option<Standing> {
        match standings.lookup(partner) {
            Lookup::Known(standing) => Some(standing),
            _ => None,
        }
    }

    #[test]
    fn a_standing_is_known_until_its_partner_is_announced() {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        let standings = Standings::new(freshness.clone());
        assert!(
            matches!(standings.lookup(P), Lookup::Bypass),
            "untrusted before the feed"
        );
        freshness.apply(Change::Listening { position: None });
        freshness.apply(Change::Heard {
            sent: Instant::now(),
        });
        for partner in [P, Q] {
            let Lookup::Unknown(pending) = standings.lookup(partner) else {
                panic!()
            };
            pending.keep(Standing::Rejected);
        }
        assert_eq!(known(&standings, P), Some(Standing::Rejected));
        freshness.apply(Change::Changed(Scope::Partners(vec![P])));
        assert_eq!(
            known(&standings, P),
            None,
            "a restored partner is read again"
        );
        assert_eq!(known(&standings, Q), Some(Standing::Rejected));
    }
}
