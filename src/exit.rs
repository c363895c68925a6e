//! What a command tells the operator when it cannot go on and only the operator can help: one
//! line saying what to do, and exit code 2 (`main`), as for a setting that is missing or
//! unusable (`config::ConfigError`).

/// Something the operator must act on (a database that refuses, a migration's blocker, a
/// port taken), said in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionNeeded(pub String);
