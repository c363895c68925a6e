//! What a chaos run records: every committed state of each page and each partner's standing
//! (with when its write was sent and when its commit was known), every value only rolled-back
//! writes held, every request the readers made and every fault the nemesis injected. Instants
//! are durations since the run's start, all taken from one monotonic clock.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub type At = Duration;

/// The run's clock: every instant recorded is read from it.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn now(&self) -> At {
        self.0.elapsed()
    }
}

/// The lines a page lists, by id: their names.
pub type Lines = BTreeMap<Uuid, String>;

/// A committed state, and the interval its commit fell in: after `sent`, before `acked`.
#[derive(Debug, Clone)]
pub struct Version<T> {
    pub value: T,
    pub sent: At,
    pub acked: At,
}

/// A partner's standing: what decides whether a token is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// `tokens_valid_after`, in Unix milliseconds.
    pub tokens_valid_after_ms: Option<i64>,
    pub deleted: bool,
}

impl Standing {
    pub fn accepts(&self, issued_at: i64) -> bool {
        !self.deleted
            && self
                .tokens_valid_after_ms
                .is_none_or(|after| after <= issued_at * 1000)
    }
}

/// One page the readers ask for: a partner's lines on a tenant (all fit on one page).
#[derive(Debug, Clone)]
pub struct Scope {
    pub partner: usize,
    pub tenant: Uuid,
    pub versions: Vec<Version<Lines>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    FeedCut,
    FeedDelayed,
    StandbyFrozen,
    ReplayPaused,
    StandbyRestarted,
    RedisStopped,
    InstanceRestarted,
    SessionsTerminated,
    PrimaryRestarted,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        Self::FeedCut,
        Self::FeedDelayed,
        Self::StandbyFrozen,
        Self::ReplayPaused,
        Self::StandbyRestarted,
        Self::RedisStopped,
        Self::InstanceRestarted,
        Self::SessionsTerminated,
        Self::PrimaryRestarted,
    ];

    /// Whether the fault is one instance's (the other is untouched).
    pub fn of_one_instance(self) -> bool {
        matches!(
            self,
            Self::FeedCut | Self::FeedDelayed | Self::InstanceRestarted
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FeedCut => "feed cut silently",
            Self::FeedDelayed => "feed delayed",
            Self::StandbyFrozen => "standby frozen",
            Self::ReplayPaused => "replay paused",
            Self::StandbyRestarted => "standby restarted",
            Self::RedisStopped => "Redis stopped",
            Self::InstanceRestarted => "instance killed, restarted",
            Self::SessionsTerminated => "sessions terminated",
            Self::PrimaryRestarted => "primary restarted",
        })
    }
}

/// A fault as injected: from its start until it was healed (`end`).
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// The instance it struck, for one instance's faults.
    pub instance: Option<usize>,
    pub start: At,
    pub end: At,
}

impl Fault {
    pub fn overlaps(&self, start: At, end: At) -> bool {
        self.start <= end && start <= self.end
    }
}

/// What a request got back.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A list envelope: the lines it listed (id, name) and its `meta.total`.
    Page {
        lines: Vec<(Uuid, String)>,
        total: u64,
    },
    /// An error envelope.
    Error {
        status: u16,
        code: i64,
        retry_after: bool,
    },
    /// A body that is not the SPEC's envelope.
    NotEnvelope { status: u16, body: String },
    /// No answer: a refused or broken connection, or none within the client's timeout.
    NoAnswer(String),
}

#[derive(Debug, Clone)]
pub struct Read {
    pub instance: usize,
    pub scope: usize,
    /// The token's `iat` (Unix seconds).
    pub issued_at: i64,
    pub start: At,
    pub end: At,
    pub outcome: Outcome,
}

/// Everything the checker judges.
#[derive(Debug, Default)]
pub struct History {
    pub scopes: Vec<Scope>,
    /// Per partner, its standings in commit order.
    pub standings: Vec<Vec<Version<Standing>>>,
    /// Names only rolled-back transactions ever wrote.
    pub rolled_back: HashSet<String>,
    pub reads: Vec<Read>,
    pub faults: Vec<Fault>,
}
