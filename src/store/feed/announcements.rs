//! What is said on the change feed's channel, read: the schema's announcements of what a
//! committed write changed (migrations 0800 and 1200), and instances' heartbeats.
//!
//! Anyone who can connect may send on the channel, so what is heard is trusted no further than
//! it can be checked: a heartbeat counts only if it carries this process's tag (an HMAC under a
//! key that never leaves the process: a replay proves nothing new, and none can be forged); an
//! announcement only if it carries the schema's tag (migration 1400: its transaction's id and
//! an HMAC under a key only the owner and the service's role may read), and only once.

use std::collections::{HashSet, VecDeque};
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
    /// A committed write changed this scope.
    Changed(Scope),
    /// `all <epoch>`, the untagged form the schema also sends for instances of the previous
    /// release (which check its epoch): nothing to do, its tagged twin says it here.
    Legacy,
    /// A heartbeat of this process, sent at this instant.
    OwnHeartbeat(Instant),
    /// Another instance's heartbeat, or a copy of one: nothing to do.
    OthersHeartbeat,
    /// A scoped announcement without the schema's tag, or with one that is not right.
    Untagged,
    /// A scoped announcement heard already, sent again.
    Repeated,
    /// Nothing the schema sends: ignored (and counted).
    Unreadable,
}

impl Announcement {
    /// Reads one notification: a scoped announcement only as `tags` verifies it.
    pub fn read(payload: &str, heartbeats: &Heartbeats, tags: &mut SchemaTags) -> Self {
        let (kind, _) = payload.split_once(' ').unwrap_or((payload, ""));
        if matches!(kind, "pairs" | "partners" | "tenants" | "everything") {
            return match tags.verify(payload) {
                Verified::Untagged => Self::Untagged,
                Verified::Repeated => Self::Repeated,
                Verified::Payload(untagged) => Self::read_untagged(untagged, heartbeats),
            };
        }
        Self::read_untagged(payload, heartbeats)
    }

    /// Reads a payload as the schema wrote it before tagging it.
    fn read_untagged(payload: &str, heartbeats: &Heartbeats) -> Self {
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
            "everything" => rest
                .parse::<u64>()
                .ok()
                .map(|_| Self::Changed(Scope::Everything)),
            "all" => rest.parse::<u64>().ok().map(|_| Self::Legacy),
            "heartbeat" => Some(match heartbeats.sent(rest) {
                Some(sent) => Self::OwnHeartbeat(sent),
                None => Self::OthersHeartbeat,
            }),
            _ => None,
        };
        read.unwrap_or(Self::Unreadable)
    }
}

/// The schema's tags on scoped announcements (migration 1400), checked, and each heard once.
pub struct SchemaTags {
    key: hmac::Key,
    heard: HashSet<[u8; TAG_BYTES]>,
    /// `heard` in the order heard, to forget the oldest first.
    order: VecDeque<[u8; TAG_BYTES]>,
}

/// A tag: the transaction's id (8 bytes), then 24 bytes of HMAC-SHA256 over it and the payload.
const TAG_BYTES: usize = 32;
/// Tags remembered, against repeats: a repeat of an older one costs reads, never staleness.
const TAGS_REMEMBERED: usize = 65_536;

enum Verified<'p> {
    /// The payload the schema tagged.
    Payload(&'p str),
    Untagged,
    Repeated,
}

impl SchemaTags {
    /// With the schema's key (`listing_announcement_key.key`).
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            heard: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// The payload without its tag, if the tag is the schema's and was not heard before.
    fn verify<'p>(&mut self, payload: &'p str) -> Verified<'p> {
        let Some((untagged, tag)) = split_tag(payload) else {
            return Verified::Untagged;
        };
        let mut signed = tag[..8].to_vec();
        signed.extend_from_slice(untagged.as_bytes());
        let mac = hmac::sign(&self.key, &signed);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&mac.as_ref()[..24], &tag[8..])
            .is_err()
        {
            return Verified::Untagged;
        }
        if !self.heard.insert(tag) {
            return Verified::Repeated;
        }
        self.order.push_back(tag);
        if self.order.len() > TAGS_REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.heard.remove(&oldest);
        }
        Verified::Payload(untagged)
    }
}

/// A scoped payload's last two ids (` <uuid> <uuid>`, or ` <uuid>/<uuid>` after `pairs`) as
/// the tag's bytes, and what comes before them.
fn split_tag(payload: &str) -> Option<(&str, [u8; TAG_BYTES])> {
    let (untagged, last) = payload.rsplit_once(' ')?;
    let (untagged, first, second) = match payload.starts_with("pairs ") {
        true => {
            let (first, second) = last.split_once('/')?;
            (untagged, first, second)
        }
        false => {
            let (untagged, first) = untagged.rsplit_once(' ')?;
            (untagged, first, last)
        }
    };
    let mut tag = [0u8; TAG_BYTES];
    tag[..16].copy_from_slice(first.parse::<Uuid>().ok()?.as_bytes());
    tag[16..].copy_from_slice(second.parse::<Uuid>().ok()?.as_bytes());
    Some((untagged, tag))
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
    const KEY: [u8; 32] = [7; 32];

    /// `payload` tagged as the schema's `notify_listing` tags it, in transaction `xid`.
    fn tagged(payload: &str, key: &[u8], xid: u64) -> String {
        let mut signed = xid.to_be_bytes().to_vec();
        signed.extend_from_slice(payload.as_bytes());
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &signed);
        let mut tag = xid.to_be_bytes().to_vec();
        tag.extend_from_slice(&mac.as_ref()[..24]);
        let first = Uuid::from_slice(&tag[..16]).unwrap();
        let second = Uuid::from_slice(&tag[16..]).unwrap();
        match payload.starts_with("pairs ") {
            true => format!("{payload} {first}/{second}"),
            false => format!("{payload} {first} {second}"),
        }
    }

    fn read(payload: &str) -> Announcement {
        Announcement::read(payload, &Heartbeats::new(), &mut SchemaTags::new(&KEY))
    }

    #[test]
    fn announcements_of_the_schema_are_read() {
        assert_eq!(
            read(&tagged(&format!("pairs {P}/{T} {T}/{P}"), &KEY, 1)),
            Announcement::Changed(Scope::Pairs(vec![(P, T), (T, P)]))
        );
        assert_eq!(
            read(&tagged(&format!("partners {P} {T}"), &KEY, 2)),
            Announcement::Changed(Scope::Partners(vec![P, T]))
        );
        assert_eq!(
            read(&tagged(&format!("tenants {T}"), &KEY, 3)),
            Announcement::Changed(Scope::Tenants(vec![T]))
        );
        assert_eq!(
            read(&tagged("everything 42", &KEY, 4)),
            Announcement::Changed(Scope::Everything)
        );
        assert_eq!(read("all 42"), Announcement::Legacy);
    }

    /// A scoped announcement counts only with the schema's tag for exactly that payload, once.
    #[test]
    fn a_scoped_announcement_without_the_schemas_tag_or_heard_before_drops_nothing() {
        let genuine = tagged(&format!("partners {P}"), &KEY, 9);
        for forged in [
            format!("partners {P}"),
            format!("partners {P} {T} {T}"),
            tagged(&format!("partners {P}"), &[8; 32], 9),
            genuine.replacen(&P.to_string(), &T.to_string(), 1),
            "everything 43".to_string(),
            tagged("everything 43", &[8; 32], 5),
            tagged(&format!("pairs {P}/{T}"), &KEY, 9).replacen(" ", "  ", 1),
        ] {
            assert_eq!(read(&forged), Announcement::Untagged, "{forged:?}");
        }
        let mut tags = SchemaTags::new(&KEY);
        let heartbeats = Heartbeats::new();
        assert_eq!(
            Announcement::read(&genuine, &heartbeats, &mut tags),
            Announcement::Changed(Scope::Partners(vec![P]))
        );
        assert_eq!(
            Announcement::read(&genuine, &heartbeats, &mut tags),
            Announcement::Repeated
        );
    }

    #[test]
    fn anything_else_is_unreadable_and_drops_nothing() {
        for payload in ["", "all", "all x", "caller_lines", "heartbeats 1 2"] {
            assert_eq!(read(payload), Announcement::Unreadable, "{payload:?}");
        }
        for payload in [
            "pairs",
            "pairs x/y",
            &tagged(&format!("pairs {P}"), &KEY, 1),
            &tagged("partners 1", &KEY, 1),
            &tagged("tenants  ", &KEY, 1),
        ] {
            assert!(
                matches!(
                    read(payload),
                    Announcement::Unreadable | Announcement::Untagged
                ),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn only_this_processs_heartbeats_count_and_none_can_be_forged() {
        let ours = Heartbeats::new();
        let sent = ours.epoch + Duration::from_millis(1500);
        let payload = ours.payload(sent);
        let tags = &mut SchemaTags::new(&KEY);
        assert_eq!(
            Announcement::read(&payload, &ours, tags),
            Announcement::OwnHeartbeat(sent)
        );
        let theirs = Heartbeats::new();
        assert_eq!(
            Announcement::read(&theirs.payload(sent), &ours, tags),
            Announcement::OthersHeartbeat
        );
        // Heard on the channel, a tag cannot be moved to another instant.
        let (tag, _) = payload["heartbeat ".len()..].split_once(' ').unwrap();
        let later = format!("heartbeat {tag} {}", 60_000_000_000_u64);
        assert_eq!(
            Announcement::read(&later, &ours, tags),
            Announcement::OthersHeartbeat
        );
    }
}
