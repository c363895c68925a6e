//! What the test binaries share: the running app and its answers (`app`), the rows tests insert
//! (`rows`), the documents' SQL (`docs`) and roles (`roles`), the `agent-api` binary as a child process (`process`), throwaway Postgres clusters
//! for the tests that stop or break a database (`cluster`), a TCP proxy that can go silent
//! (`proxy`), a Redis of the test's own (`redis`), HAProxy in front of instances
//! (`balancer`), PgBouncer in front of Postgres (`pgbouncer`), a test CA for TLS (`pki`), Patroni's nodes behind HAProxy (`patroni`), a Prometheus watching them
//! (`prometheus`) and the free ports they listen on (`ports`). Not every binary uses every helper.
#![allow(dead_code)]

pub mod app;
pub mod balancer;
pub mod cluster;
pub mod docs;
pub mod patroni;
pub mod pgbouncer;
pub mod pki;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod roles;
pub mod rows;

pub use agent_api::store::MIGRATOR;
pub use app::*;
pub use rows::*;
