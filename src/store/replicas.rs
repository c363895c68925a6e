//! Hot standbys (`DATABASE_REPLICA_URLS`) that take the list statement of cache misses. A standby
//! may lag the primary, so a read goes to one only once it has replayed past the watermark: the
//! primary's WAL position after the last change this instance has heard of (`cache::Freshness`).
//! No page older than a change the instance knows of is then served or kept. A standby that lags
//! past `replica_max_wait_ms`, is down or refuses connections is passed over (the read goes to
//! the primary) and probed every `replica_retry_ms` until it is fit again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

use super::pool::{pool_options, session_options};
use crate::background::Background;
use crate::config::{ConfigError, DatabaseSettings};

/// How long a read waits for a standby's connection before passing it over.
const CONNECT_WITHIN: Duration = Duration::from_millis(250);

/// How often a standby that is behind is asked again how far it has replayed.
const POLL_EVERY: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Ready,
    /// Was behind the watermark longer than a read may wait; passed over until it catches up.
    Lagging,
    /// Refused or failed a connection; passed over until it answers.
    Down,
}

impl ReplicaState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Lagging => "lagging",
            Self::Down => "down",
        }
    }

    fn from_number(number: u8) -> Self {
        match number {
            0 => Self::Ready,
            1 => Self::Lagging,
            _ => Self::Down,
        }
    }
}

/// Why a read went to the primary rather than a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassedOver {
    /// None is ready: every standby is down or lagging.
    NoneReady,
    Down,
    /// It had not replayed to the watermark within the wait.
    Behind,
}

impl PassedOver {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoneReady => "no_replica_ready",
            Self::Down => "replica_down",
            Self::Behind => "replica_behind",
        }
    }
}

struct Replica {
    /// `host:port`, never the credentials.
    name: String,
    pool: PgPool,
    state: AtomicU8,
    /// While lagging: the position it must replay to be ready again.
    catch_up_to: AtomicU64,
}

impl Replica {
    fn state(&self) -> ReplicaState {
        ReplicaState::from_number(self.state.load(Ordering::SeqCst))
    }

    fn set(&self, state: ReplicaState) {
        if self.state.swap(state as u8, Ordering::SeqCst) != state as u8 {
            tracing::info!(replica = %self.name, state = state.name(), "replica state");
            metrics::gauge!("agent_api_db_replica_state", "replica" => self.name.clone())
                .set(f64::from(state as u8));
        }
    }
}

pub struct Replicas {
    replicas: Vec<Replica>,
    next: AtomicUsize,
    max_wait: Duration,
    retry_every: Duration,
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
                let options = session_options(url.expose_secret(), settings).map_err(|error| {
                    ConfigError(format!(
                        "DATABASE_REPLICA_URLS holds a URL that is not usable: {error}"
                    ))
                })?;
                let name = format!("{}:{}", options.get_host(), options.get_port());
                let pool = pool_options(settings.replica_max_connections, settings)
                    .acquire_timeout(CONNECT_WITHIN)
                    .connect_lazy_with(options);
                Ok(Replica {
                    name,
                    pool,
                    state: AtomicU8::new(ReplicaState::Ready as u8),
                    catch_up_to: AtomicU64::new(0),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Some(Arc::new(Self {
            replicas,
            next: AtomicUsize::new(0),
            max_wait: Duration::from_millis(settings.replica_max_wait_ms),
            retry_every: Duration::from_millis(settings.replica_retry_ms),
        })))
    }

    /// Each standby by name, and how it stands.
    pub fn states(&self) -> Vec<(String, ReplicaState)> {
        self.replicas
            .iter()
            .map(|replica| (replica.name.clone(), replica.state()))
            .collect()
    }

    /// A connection of a ready standby that has replayed at least to `watermark`, waiting for it
    /// up to `replica_max_wait_ms`.
    pub async fn connection(&self, watermark: u64) -> Result<PoolConnection<Postgres>, PassedOver> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let replica = (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| replica.state() == ReplicaState::Ready)
            .ok_or(PassedOver::NoneReady)?;
        let Ok(mut connection) = replica.pool.acquire().await else {
            replica.set(ReplicaState::Down);
            return Err(PassedOver::Down);
        };
        let deadline = Instant::now() + self.max_wait;
        loop {
            match replayed(&mut connection).await {
                Err(_) => {
                    replica.set(ReplicaState::Down);
                    return Err(PassedOver::Down);
                }
                Ok(position) if position >= watermark => return Ok(connection),
                Ok(_) if Instant::now() >= deadline => {
                    replica.catch_up_to.fetch_max(watermark, Ordering::SeqCst);
                    replica.set(ReplicaState::Lagging);
                    return Err(PassedOver::Behind);
                }
                Ok(_) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    /// Probes the standbys that are passed over, every `replica_retry_ms`.
    pub fn watch(self: &Arc<Self>, background: &Background) {
        let replicas = Arc::downgrade(self);
        let every = self.retry_every;
        background.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(replicas) = replicas.upgrade() else {
                    return;
                };
                for replica in &replicas.replicas {
                    replicas.probe(replica).await;
                }
            }
        });
    }

    async fn probe(&self, replica: &Replica) {
        if replica.state() == ReplicaState::Ready {
            return;
        }
        let position = match replica.pool.acquire().await {
            Ok(mut connection) => replayed(&mut connection).await,
            Err(error) => Err(error),
        };
        match position {
            Err(_) => replica.set(ReplicaState::Down),
            Ok(position) if position >= replica.catch_up_to.load(Ordering::SeqCst) => {
                replica.set(ReplicaState::Ready)
            }
            Ok(_) => replica.set(ReplicaState::Lagging),
        }
    }
}

/// How far a standby has replayed, in WAL bytes. A server that is not in recovery (a primary,
/// a promoted standby) has everything it holds, so it counts as caught up.
async fn replayed(connection: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("select (pg_last_wal_replay_lsn() - '0/0')::bigint")
            .fetch_one(connection)
            .await?;
    Ok(position.map_or(u64::MAX, |position| position as u64))
}
