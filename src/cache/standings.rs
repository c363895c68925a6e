//! Partners' standing (SPEC §4: a partner, not deleted, tokens not revoked) kept in memory, so a
//! request whose page is kept costs the database nothing, whatever token it carries: a fresh
//! token per call is answered from memory like any other. Each is kept until its partner is
//! announced; `warmth` reads every partner's at once whenever the feed listens anew (a restart,
//! a reconnect), so a herd of partners arriving then costs one statement, not one each.

use uuid::Uuid;

use super::freshness::{Depends, Stamp};
use super::memory::{Memory, Slots};
use crate::domain::partners::Standing;

/// Partners remembered at most (the least used are forgotten first).
pub const MAX_PARTNERS: usize = 100_000;

pub struct Known(quick_cache::sync::Cache<Uuid, (Standing, Stamp)>);

impl Default for Known {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(MAX_PARTNERS))
    }
}

impl Slots<Uuid, Standing> for Known {
    fn get(&self, partner: &Uuid) -> Option<(Standing, Stamp)> {
        self.0.get(partner)
    }

    fn put(&self, partner: Uuid, standing: Standing, read_at: Stamp) {
        self.0.insert(partner, (standing, read_at));
    }
}

pub type Standings = Memory<Uuid, Standing, Known>;

/// A standing depends on its partner's row (and its customers', which announce it too).
pub fn depends(partner: &Uuid) -> Depends {
    Depends::Partner(*partner)
}
