//! The product's own rules, free of HTTP and SQL.

pub mod caller_line;
pub mod page;
pub mod query;
