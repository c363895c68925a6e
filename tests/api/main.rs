//! Integration tests: the real application over real HTTP, each test on its own fresh
//! Postgres database (`#[sqlx::test]`, which needs `DATABASE_URL` naming a server it may
//! create databases on). Run them with `scripts/test`.

mod auth;
mod cache;
mod callerline;
mod edge;
mod helpers;
mod legacy;
mod operations;
mod reference;
