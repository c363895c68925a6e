//! Hot standbys (`DATABASE_REPLICA_URLS`) that take the list statement of cache misses. A standby
//! may lag the primary, so a read goes to one only once it has replayed past the watermark: the
//! primary's WAL position after the last change this instance has heard of (`cache::Freshness`).
//! No page older than a change the instance knows of is then served or kept.
//!
//! A standby is read only while it is one of this primary's (the same system identifier, in
//! recovery): a URL naming another server, or a standby since promoted, is never read. One
//! that lags past `replica_max_wait_ms`, is down, or does not finish a read within
//! `replica_deadline_ms` (a frozen VM, a firewall dropping its flow) is passed over (the read
//! goes to the primary) and probed every `replica_retry_ms`, each probe bounded the same way,
//! until it is fit again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool};

use super::postgres::lanes::Lanes;
use super::postgres::pool::session_options;
use super::postgres::session::{Protocol, Session, bounded};
use super::postgres::wal::{insert_position, replayed, system_identifier};
use crate::background::Background;
use crate::config::{ConfigError, DatabaseSettings, PoolMode};

/// How often a standby that is behind is asked again how far it has replayed.
const POLL_EVERY: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Ready,
    /// Was behind the watermark longer than a read may wait; passed over until it catches up.
    Lagging,
    /// Refused, failed or did not answer in time; passed over until it answers.
    Down,
    /// Another server than a standby of this primary (a foreign one, or one promoted).
    NotAStandby,
}

impl ReplicaState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Lagging => "lagging",
            Self::Down => "down",
            Self::NotAStandby => "not a standby",
        }
    }

    fn from_number(number: u8) -> Self {
        match number {
            0 => Self::Ready,
            1 => Self::Lagging,
            2 => Self::Down,
            _ => Self::NotAStandby,
        }
    }
}

/// Why a read went to the primary rather than a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassedOver {
    /// None is ready.
    NoneReady,
    Down,
    /// It had not replayed to the watermark within the wait.
    Behind,
    /// It is no standby any more (promoted).
    NotAStandby,
}

impl PassedOver {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoneReady => "no_replica_ready",
            Self::Down => "replica_down",
            Self::Behind => "replica_behind",
            Self::NotAStandby => "not_a_standby",
        }
    }
}

struct Replica {
    /// `host:port`, never the credentials.
    name: String,
    lanes: Lanes,
    state: AtomicU8,
    /// While lagging: the position it must replay to be ready again.
    catch_up_to: AtomicU64,
}

impl Replica {
    fn state(&self) -> ReplicaState {
        ReplicaState::from_number(self.state.load(Ordering::SeqCst))
    }

    fn set(&self, state: ReplicaState) {
        metrics::gauge!("agent_api_db_replica_state", "replica" => self.name.clone())
            .set(f64::from(state as u8));
        if self.state.swap(state as u8, Ordering::SeqCst) != state as u8 {
            match state {
                ReplicaState::NotAStandby => tracing::error!(
                    replica = %self.name,
                    "DATABASE_REPLICA_URLS names a server that is not a standby of this primary: never read"
                ),
                _ => tracing::info!(replica = %self.name, state = state.name(), "replica state"),
            }
        }
    }
}

pub struct Replicas {
    replicas: Vec<Replica>,
    next: AtomicUsize,
    max_wait: Duration,
    deadline: Duration,
    retry_every: Duration,
    /// The primary's system identifier: what makes a server one of its standbys.
    system: AtomicU64,
}

impl Replicas {
    /// `None` when no standby is configured.
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Option<Arc<Self>>, ConfigError> {
        if settings.replica_urls.is_empty() {
            return Ok(None);
        }
        let replicas = settings
            .replica_urls
            .iter()
            .map(|url| {
                let options = session_options(url.expose_secret(), settings, PoolMode::Session)
                    .map_err(|error| {
                        ConfigError::about(
                            "database.replica_urls",
                            &format!("holds a URL that is not usable: {error}"),
                        )
                    })?;
                let name = format!("{}:{}", options.get_host(), options.get_port());
                let lanes = Lanes::new(
                    options,
                    settings.replica_max_connections,
                    Duration::from_millis(settings.connect_timeout_ms),
                );
                Ok(Replica {
                    name,
                    lanes,
                    // Unproven until the first probe says it is one of the primary's.
                    state: AtomicU8::new(ReplicaState::Down as u8),
                    catch_up_to: AtomicU64::new(0),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Some(Arc::new(Self {
            replicas,
            next: AtomicUsize::new(0),
            max_wait: Duration::from_millis(settings.replica_max_wait_ms),
            deadline: Duration::from_millis(settings.replica_deadline_ms),
            retry_every: Duration::from_millis(settings.replica_retry_ms),
            system: AtomicU64::new(0),
        })))
    }

    /// Each standby by name, and how it stands.
    pub fn states(&self) -> Vec<(String, ReplicaState)> {
        self.replicas
            .iter()
            .map(|replica| (replica.name.clone(), replica.state()))
            .collect()
    }

    /// Runs `statement` on a ready standby that has replayed at least to `watermark` (waiting
    /// for it up to `replica_max_wait_ms`), all within `replica_deadline_ms`.
    pub async fn read<T>(
        &self,
        watermark: u64,
        statement: &'static str,
        query: &impl AsyncFn(Session<'_>) -> Result<T, sqlx::Error>,
    ) -> Result<T, PassedOver> {
        let started = Instant::now();
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let replica = (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| replica.state() == ReplicaState::Ready)
            .ok_or(PassedOver::NoneReady)?;
        let down = || {
            replica.set(ReplicaState::Down);
            PassedOver::Down
        };
        let mut lease = tokio::time::timeout(self.deadline, replica.lanes.acquire())
            .await
            .map_err(|_| down())?
            .map_err(|_| down())?;
        let left = self.deadline.saturating_sub(started.elapsed());
        let read = async |mut session: Session<'_>| match self
            .caught_up(session.connection(), watermark)
            .await?
        {
            Ok(()) => query(session).await.map(Ok),
            Err(passed_over) => Ok(Err(passed_over)),
        };
        // A standby is a session of its own: its statements are named and kept.
        match bounded(
            &mut lease,
            Protocol::Named,
            left,
            statement,
            "standby",
            read,
        )
        .await
        {
            Some(Ok(Ok(value))) => Ok(value),
            Some(Ok(Err(PassedOver::Behind))) => {
                replica.catch_up_to.fetch_max(watermark, Ordering::SeqCst);
                replica.set(ReplicaState::Lagging);
                Err(PassedOver::Behind)
            }
            Some(Ok(Err(passed_over))) => {
                replica.set(ReplicaState::NotAStandby);
                Err(passed_over)
            }
            Some(Err(_)) | None => Err(down()),
        }
    }

    /// Whether the standby behind `connection` replays to `watermark` within the wait.
    async fn caught_up(
        &self,
        connection: &mut PgConnection,
        watermark: u64,
    ) -> Result<Result<(), PassedOver>, sqlx::Error> {
        let deadline = Instant::now() + self.max_wait;
        loop {
            match replayed(connection).await? {
                None => return Ok(Err(PassedOver::NotAStandby)),
                Some(position) if position >= watermark => return Ok(Ok(())),
                Some(_) if Instant::now() >= deadline => return Ok(Err(PassedOver::Behind)),
                Some(_) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    /// Probes every standby once, so that a URL naming another server is refused now, in one
    /// line, and the ones passed over every `replica_retry_ms` from then on.
    pub async fn watch(self: &Arc<Self>, primary: &PgPool, background: &Background) {
        for replica in &self.replicas {
            self.probe(replica, primary).await;
        }
        let (replicas, primary) = (Arc::downgrade(self), primary.clone());
        let every = self.retry_every;
        background.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(replicas) = replicas.upgrade() else {
                    return;
                };
                for replica in &replicas.replicas {
                    if replica.state() != ReplicaState::Ready {
                        replicas.probe(replica, &primary).await;
                    }
                }
            }
        });
    }

    /// Says how `replica` stands, learning the primary's system identifier first if it is
    /// not known yet.
    async fn probe(&self, replica: &Replica, primary: &PgPool) {
        if self.system.load(Ordering::SeqCst) == 0
            && let Ok(Ok(system)) =
                tokio::time::timeout(self.deadline, system_identifier(primary)).await
        {
            self.system.store(system, Ordering::SeqCst);
        }
        let looked = tokio::time::timeout(self.deadline, async {
            let mut lease = replica.lanes.acquire().await?;
            lease
                .run(async |connection| {
                    let system = system_identifier(&mut *connection).await?;
                    Ok((system, replayed(connection).await?))
                })
                .await
        })
        .await;
        let state = match looked {
            Ok(Ok((system, replayed))) => {
                let known = self.system.load(Ordering::SeqCst);
                let target = replica.catch_up_to.load(Ordering::SeqCst);
                match replayed {
                    _ if known == 0 => ReplicaState::Down,
                    _ if system != known => ReplicaState::NotAStandby,
                    None => ReplicaState::NotAStandby,
                    Some(position) if position >= target => ReplicaState::Ready,
                    // A position from before a failover, that the new timeline has not reached:
                    // reads check their own watermark, which listening anew has reset.
                    Some(_) if self.primary_is_behind(primary, target).await => {
                        replica.catch_up_to.store(0, Ordering::SeqCst);
                        ReplicaState::Ready
                    }
                    Some(_) => ReplicaState::Lagging,
                }
            }
            _ => ReplicaState::Down,
        };
        replica.set(state);
    }

    /// Whether the primary's WAL is short of `target` (a position of another timeline).
    async fn primary_is_behind(&self, primary: &PgPool, target: u64) -> bool {
        let position = tokio::time::timeout(self.deadline, insert_position(primary)).await;
        matches!(position, Ok(Ok(at)) if at < target)
    }
}
