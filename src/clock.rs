//! The time source of the legacy sunset (SPEC §3), injected so tests can run the service at
//! any instant. Token times are checked against the system clock, as `jsonwebtoken` checks `exp`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
