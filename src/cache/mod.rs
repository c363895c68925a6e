//! What the service keeps in memory between requests, and how it knows it is still true: every
//! committed write announces what it changed on the change feed (`store::feed`), `freshness`
//! follows the feed, and `memory` is the one protocol every kept value follows: a ticket taken
//! before the read, kept only if nothing it depends on was announced since, answered only while
//! memory is trusted and it is still current, and one read shared by concurrent misses.
//! `pages`, `standings` and `default_tenant` are where each kind of value is kept; `warmth`
//! reads standings and the default tenant ahead of requests.

pub mod default_tenant;
pub mod freshness;
pub mod memory;
pub mod pages;
pub mod standings;
pub mod warmth;

pub use default_tenant::DefaultTenant;
pub use freshness::{Depends, Freshness, Ticket};
pub use memory::{Keep, Memory, Outcome};
pub use pages::{PageKey, Pages};
pub use standings::Standings;
pub use warmth::Warmth;
