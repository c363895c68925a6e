//! One file per endpoint family; `http::routes` (the table) maps paths to these handlers.

pub mod caller_lines;
pub mod legacy;
pub mod ops;
pub mod reference;
pub mod tenants;
