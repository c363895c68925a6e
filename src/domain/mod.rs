//! The product's own rules and the values they speak of, free of HTTP and SQL: the layers
//! around it (`tokens`, `store`, `http`) depend on it and not on each other's types.

pub mod caller_lines;
pub mod page;
pub mod partners;
pub mod query;
pub mod tenants;
