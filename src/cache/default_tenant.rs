//! Which tenant is the default (the legacy route's, SPEC §3), kept in memory and read again
//! whenever a tenant changes, so that no request needs the database to learn it.

use std::sync::Mutex;

use uuid::Uuid;

use super::freshness::{Depends, Stamp};
use super::memory::{Memory, Slots};

/// The one slot: the default tenant's id (`None`: there is none) and when it was read.
#[derive(Default)]
pub struct Slot(Mutex<Option<(Option<Uuid>, Stamp)>>);

impl Slot {
    /// The last id read, current or not: good enough for a header on an answer to a stranger.
    pub fn last_known(&self) -> Option<Uuid> {
        self.0
            .lock()
            .expect("no holder panics")
            .and_then(|(id, _)| id)
    }
}

impl Slots<(), Option<Uuid>> for Slot {
    fn get(&self, _: &()) -> Option<(Option<Uuid>, Stamp)> {
        *self.0.lock().expect("no holder panics")
    }

    fn put(&self, _: (), id: Option<Uuid>, read_at: Stamp) {
        *self.0.lock().expect("no holder panics") = Some((id, read_at));
    }
}

pub type DefaultTenant = Memory<(), Option<Uuid>, Slot>;

/// Any tenant's change may move the default.
pub fn depends(_: &()) -> Depends {
    Depends::Tenants
}
