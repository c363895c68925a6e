//! What the service keeps in memory between requests, and how it knows it is still true: every
//! committed write announces what it changed on the change feed (`store::changes`), `freshness`
//! follows the feed, and each kept value is answered only while nothing it depends on has been
//! announced since it was read, and only while the feed is proven to hear.

pub mod default_tenant;
pub mod freshness;
pub mod pages;
pub mod standings;

pub use default_tenant::DefaultTenant;
pub use freshness::Freshness;
pub use pages::Pages;
pub use standings::Standings;
