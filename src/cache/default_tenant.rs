//! Which tenant is the default (the legacy route's, SPEC §3), kept in memory and read again
//! whenever a tenant changes, so that no request needs the database to learn it.

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::freshness::{Freshness, Stamp};

pub struct DefaultTenant {
    known: Mutex<Option<(Option<Uuid>, Stamp)>>,
    freshness: Arc<Freshness>,
}

impl DefaultTenant {
    pub fn new(freshness: Arc<Freshness>) -> Self {
        Self {
            known: Mutex::default(),
            freshness,
        }
    }

    /// The default tenant's id (`Some(None)`: there is none) while memory is trusted and no
    /// tenant changed since it was read; `None` when it must be read from the database.
    pub fn current(&self) -> Option<Option<Uuid>> {
        let (id, read_at) = (*self.known.lock().expect("no holder panics"))?;
        (self.freshness.is_trusted() && self.freshness.default_tenant_is_current(read_at))
            .then_some(id)
    }

    /// The last id read, current or not: good enough for a header on an answer to a stranger.
    pub fn last_known(&self) -> Option<Uuid> {
        self.known
            .lock()
            .expect("no holder panics")
            .and_then(|(id, _)| id)
    }

    /// Taken before reading it from the database.
    pub fn stamp(&self) -> Stamp {
        self.freshness.stamp()
    }

    /// Keeps what was read at `read_at`, unless a tenant changed meanwhile.
    pub fn keep(&self, id: Option<Uuid>, read_at: Stamp) {
        if self.freshness.default_tenant_is_current(read_at) {
            *self.known.lock().expect("no holder panics") = Some((id, read_at));
        }
    }
}
