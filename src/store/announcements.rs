//! What is said on the change feed's channel, read: the schema's announcements of what a
//! committed write changed (migrations 0800 and 1200), and instances' heartbeats.
//!
//! Anyone who can connect may send on the channel, so what is heard is trusted no further than
//! it can be checked: a heartbeat counts only if it carries this process's tag (an HMAC under a
//! key that never leaves the process: a replay proves nothing new, and none can be forged); an
//! `all <epoch>` only if the schema's own epoch has reached it (checked by the feed); a scoped
//! announcement drops only what it names, which costs reads but can make nothing stale.

use std::time::{Duration, Instant};

use aws_lc_rs::{hmac, rand};
use uuid::Uuid;

/// The channel of migration 0800 (the schema's `notify_listing`).
pub const CHANNEL: &str = "agent_api_listing_changed";

/// What an announcement says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The lines of these (partner, tenant) pairs.
    Pairs(Vec<(Uuid, Uuid)>),
    /// These partners' own rows or their customers' and sub-accounts': every page of theirs,
    /// and whether their tokens are accepted.
    Partners(Vec<Uuid>),
    /// These tenants' rows: their pages for every partner, and which tenant is the default.
    Tenants(Vec<Uuid>),
    Everything,
}

/// One notification of the channel, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// A committed write changed this scope (never `Everything`: see `Everything` below).
    Changed(Scope),
    /// `all <epoch>`: everything changed, if the schema's epoch has really reached `epoch`.
    Everything { epoch: u64 },
    /// A heartbeat of this process, sent at this instant.
    OwnHeartbeat(Instant),
    /// Another instance's heartbeat, or a copy of one: nothing to do.
    OthersHeartbeat,
    /// Nothing the schema sends: ignored (and counted).
    Unreadable,
}

impl Announcement {
    pub fn read(payload: &str, heartbeats: &Heartbeats) -> Self {
        let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        let uuids = || -> Option<Vec<Uuid>> { rest.split(' ').map(|id| id.parse().ok()).collect() };
        let read = match kind {
            "pairs" => rest
                .split(' ')
                .map(|pair| {
                    let (partner, tenant) = pair.split_once('/')?;
                    Some((partner.parse().ok()?, tenant.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()
                .map(|pairs| Self::Changed(Scope::Pairs(pairs))),
            "partners" => uuids().map(|ids| Self::Changed(Scope::Partners(ids))),
            "tenants" => uuids().map(|ids| Self::Changed(Scope::Tenants(ids))),
            "all" => rest.parse().ok().map(|epoch| Self::Everything { epoch }),
            "heartbeat" => Some(match heartbeats.sent(rest) {
                Some(sent) => Self::OwnHeartbeat(sent),
                None => Self::OthersHeartbeat,
            }),
            _ => None,
        };
        read.unwrap_or(Self::Unreadable)
    }
}

/// This process's heartbeats: `heartbeat <tag> <nanos>`, `nanos` since the process's epoch and
/// `tag` its HMAC under a key made at start and never sent. (Instances of the previous release
/// read such a heartbeat as another instance's, and theirs are others' here: a rolling deploy
/// mixes them safely.)
pub struct Heartbeats {
    key: hmac::Key,
    epoch: Instant,
}

impl Heartbeats {
    pub fn new() -> Self {
        Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
                .expect("the system's random source works"),
            epoch: Instant::now(),
        }
    }

    /// The payload of a heartbeat sent at `sent`.
    pub fn payload(&self, sent: Instant) -> String {
        let nanos = (sent - self.epoch).as_nanos().to_string();
        format!("heartbeat {} {nanos}", self.tag(&nanos))
    }

    /// When a heartbeat of this process was sent, from its payload after `heartbeat `.
    fn sent(&self, rest: &str) -> Option<Instant> {
        let (tag, nanos) = rest.split_once(' ')?;
        if tag != self.tag(nanos) {
            return None;
        }
        Some(self.epoch + Duration::from_nanos(nanos.parse().ok()?))
    }

    fn tag(&self, nanos: &str) -> String {
        let tag = hmac::sign(&self.key, nanos.as_bytes());
        tag.as_ref()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const T: Uuid = Uuid::from_u128(2);

    fn read(payload: &str) -> Announcement {
        Announcement::read(payload, &Heartbeats::new())
    }

    #[test]
    fn announcements_of_the_schema_are_read() {
        assert_eq!(
            read(&format!("pairs {P}/{T} {T}/{P}")),
            Announcement::Changed(Scope::Pairs(vec![(P, T), (T, P)]))
        );
        assert_eq!(
            read(&format!("partners {P} {T}")),
            Announcement::Changed(Scope::Partners(vec![P, T]))
        );
        assert_eq!(
            read(&format!("tenants {T}")),
            Announcement::Changed(Scope::Tenants(vec![T]))
        );
        assert_eq!(read("all 42"), Announcement::Everything { epoch: 42 });
    }

    #[test]
    fn anything_else_is_unreadable_and_drops_nothing() {
        for payload in [
            "",
            "all",
            "all x",
            "caller_lines",
            "pairs",
            "pairs x/y",
            &format!("pairs {P}"),
            "partners 1",
            "tenants  ",
        ] {
            assert_eq!(read(payload), Announcement::Unreadable, "{payload:?}");
        }
    }

    #[test]
    fn only_this_processs_heartbeats_count_and_none_can_be_forged() {
        let ours = Heartbeats::new();
        let sent = ours.epoch + Duration::from_millis(1500);
        let payload = ours.payload(sent);
        assert_eq!(
            Announcement::read(&payload, &ours),
            Announcement::OwnHeartbeat(sent)
        );
        let theirs = Heartbeats::new();
        assert_eq!(
            Announcement::read(&theirs.payload(sent), &ours),
            Announcement::OthersHeartbeat
        );
        // Heard on the channel, a tag cannot be moved to another instant.
        let (tag, _) = payload["heartbeat ".len()..].split_once(' ').unwrap();
        let later = format!("heartbeat {tag} {}", 60_000_000_000_u64);
        assert_eq!(
            Announcement::read(&later, &ours),
            Announcement::OthersHeartbeat
        );
    }
}
