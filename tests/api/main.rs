//! Integration tests: the real application over real HTTP, each test on its own fresh
//! Postgres database (`#[sqlx::test]`, which needs `DATABASE_URL` naming a server it may
//! create databases on). Run them with `scripts/test`. One file per resource or concern.

#[path = "../support/mod.rs"]
mod support;

mod announcements;
mod auth;
mod cache_scopes;
mod caller_lines;
mod cli;
mod etag_and_encoding;
mod external_issuers;
mod hostile_clients;
mod https;
mod least_privilege;
mod legacy;
mod line_counts;
mod list_errors;
mod listing_cache;
mod literals;
mod migrations;
mod observability;
mod operator_sql;
mod pagination;
mod rate_limits;
mod reference;
mod schema;
mod tenants;
mod traces;
mod untrusted_neighbours;
