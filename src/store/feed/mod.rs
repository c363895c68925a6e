//! The change feed: `LISTEN` and the heartbeat that proves it hears (`changes`), and what is
//! said on its channel, read and checked (`announcements`).

pub mod announcements;
pub mod changes;
