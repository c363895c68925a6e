//! Which tenant is the default (the legacy route's, SPEC §3), kept in memory until any tenant
//! is announced (or the feed listens anew); `warmth` reads it again then, ahead of requests.

use uuid::Uuid;

use super::freshness::Depends;
use super::memory::{Memory, Slot};

/// The default tenant's id (`None`: there is none), in one slot. `slots().last()` is the last
/// id read, current or not: good enough for a header on an answer to a stranger.
pub type DefaultTenant = Memory<(), Option<Uuid>, Slot<Option<Uuid>>>;

/// Any tenant's change may move the default.
pub fn depends(_: &()) -> Depends {
    Depends::Tenants
}
