//! agent-api: the partner-facing HTTP API of the cloud call-centre platform.
//!
//! `main.rs` only parses the command line; everything it runs lives here, so the integration
//! tests drive the same code as the binary. A request goes route (`http`) → handler
//! (`http::routes`) → what is kept in memory (`cache`), or on a miss SQL (`store`) → domain
//! rules (`domain`) → the response. `startup` builds the servers and the `background` work
//! that keeps memory true (the change feed) and warm.

pub mod background;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod exit;
pub mod health;
pub mod http;
pub mod rate_limit;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod traces;
