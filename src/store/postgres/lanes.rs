//! The connections the service's statements run on (`Database`), kept per thread: a lane of
//! idle connections for each thread that runs statements, all lanes together holding at most
//! `max_connections` open.
//!
//! Why not sqlx's pool for these: it sends every connection a round trip of its own when it is
//! released (a `Sync`, from a task spawned for it), so a miss cost the database two messages
//! and the service a task, a send and a receive more; and its connections are shared by the
//! HTTP workers, each a runtime of its own, so a connection opened by one worker and used by
//! another had its answers read by the first worker's reactor and handed over between threads.
//! A lane's connections go back to it without a round trip (one idle for a second is pinged
//! before use, as before), and its thread uses the ones it opened first. Requests are served in
//! turn: a thread whose lane has none idle and may open no more takes another lane's idle one,
//! whose answers are then still read by the reactor of the thread that opened it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use thread_local::ThreadLocal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pool::{IDLE_BEFORE_PING, Waiting, record_acquired};

/// How long a connection is used before it is closed on its return, so that a connection
/// kept busy does not outlive a move of the server behind its address (sqlx's default).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The first wait before connecting again, doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

pub struct Lanes {
    max_connections: usize,
    options: PgConnectOptions,
    acquire_timeout: Duration,
    lanes: ThreadLocal<Lane>,
    /// One per connection that may be leased now: each idle one, and each not opened yet.
    /// Requests wait for one in turn, so that a thread taking back the connection it just
    /// returned cannot starve another's requests.
    free: Semaphore,
    /// One per open connection, idle or leased.
    open: Arc<Semaphore>,
}

/// One thread's idle connections, newest last.
#[derive(Default)]
struct Lane {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    connection: Kept,
    since: Instant,
}

/// An open connection, holding one of `Lanes::open`'s permits until it is dropped (closed),
/// wherever that happens: a lease or an acquire abandoned mid-way leaks none.
struct Kept {
    connection: PgConnection,
    opened: Instant,
    _open: OwnedSemaphorePermit,
}

impl Lanes {
    pub fn new(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> Self {
        Self {
            max_connections: max_connections as usize,
            options,
            acquire_timeout,
            lanes: ThreadLocal::new(),
            free: Semaphore::new(max_connections as usize),
            open: Arc::new(Semaphore::new(max_connections as usize)),
        }
    }

    /// The most connections all lanes hold open at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections open, and of those idle (`agent_api_db_pool_connections`,
    /// `agent_api_db_pool_idle_connections`).
    pub fn counts(&self) -> (usize, usize) {
        let open = self.max_connections - self.open.available_permits();
        let idle = self
            .lanes
            .iter()
            .map(|lane| lane.idle.lock().expect("no holder panics").len())
            .sum();
        (open, idle)
    }

    /// A connection for this thread, once one is free (in turn, within `acquire_timeout`):
    /// its lane's newest idle one; else a new one while fewer than `max_connections` are open;
    /// else another lane's idle one.
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        let started = Instant::now();
        let lane = self.lanes.get_or_default();
        let kept = {
            let _waiting = Waiting::begin();
            let take = async {
                let free = self.free.acquire().await.expect("never closed");
                let kept = self.take(lane).await?;
                // Given back by the lease, with its connection or after closing it.
                free.forget();
                Ok::<_, sqlx::Error>(kept)
            };
            tokio::time::timeout(self.acquire_timeout, take)
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??
        };
        record_acquired(started);
        Ok(Lease {
            lanes: self,
            lane,
            kept: Some(kept),
            fit: true,
        })
    }

    /// The connection a `free` permit stands for. Another request's failed ping may close an
    /// idle connection after it was looked for and make room after room was: then looked for
    /// again.
    async fn take(&self, lane: &Lane) -> Result<Kept, sqlx::Error> {
        loop {
            if let Some(kept) = self.idle_from(lane).await {
                return Ok(kept);
            }
            if let Ok(permit) = self.open.clone().try_acquire_owned() {
                return self.connect(permit).await;
            }
            let others = self
                .lanes
                .iter()
                .filter(|other| !std::ptr::eq(*other, lane));
            for other in others {
                if let Some(kept) = self.idle_from(other).await {
                    return Ok(kept);
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// The newest idle connection of `lane` that is fit for use: pinged if idle a second,
    /// closed instead if the ping fails.
    async fn idle_from(&self, lane: &Lane) -> Option<Kept> {
        loop {
            let Idle {
                mut connection,
                since,
            } = lane.idle.lock().expect("no holder panics").pop()?;
            if since.elapsed() < IDLE_BEFORE_PING || connection.connection.ping().await.is_ok() {
                return Some(connection);
            }
            // Closed: its permit of `open` makes room for a new one.
            drop(connection);
        }
    }

    /// A new connection; while the server is unreachable or starting, tried again with
    /// backoff (within `acquire`'s timeout), so that a primary restarting holds requests a
    /// moment instead of failing them.
    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Kept, sqlx::Error> {
        let mut backoff = FIRST_BACKOFF;
        let connection = loop {
            match self.options.connect().await {
                Ok(connection) => break connection,
                Err(error) if passing(&error) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Kept {
            connection,
            opened: Instant::now(),
            _open: permit,
        })
    }

    /// Ends a lease: its connection back to `lane`, or closed (making room for a new one),
    /// then free for the next request.
    fn give_back(&self, lane: &Lane, kept: Kept, fit: bool) {
        if fit && kept.opened.elapsed() < MAX_LIFETIME {
            lane.idle.lock().expect("no holder panics").push(Idle {
                connection: kept,
                since: Instant::now(),
            });
        } else {
            drop(kept);
        }
        self.free.add_permits(1);
    }
}

/// A connection leased from its thread's lane, going back to it when dropped: closed instead
/// when a statement on it was left unfinished or failed for want of a connection (`run`).
pub struct Lease<'a> {
    lanes: &'a Lanes,
    lane: &'a Lane,
    kept: Option<Kept>,
    /// Whether the connection may serve another statement: false while one runs.
    fit: bool,
}

impl Lease<'_> {
    /// Runs `work` on the connection. The connection serves the next statement unless `work`
    /// was left unfinished (the request abandoned, the statement given up on), failed as a
    /// connection, or had its session ended; a statement the server refused (a timeout, a
    /// constraint) leaves it fit.
    pub async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        self.fit = false;
        let connection = &mut self.kept.as_mut().expect("held until dropped").connection;
        let outcome = work(connection).await;
        self.fit = match &outcome {
            Ok(_) => true,
            Err(error) => matches!(error, sqlx::Error::Database(_)) && !session_ended(error),
        };
        outcome
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(kept) = self.kept.take() else {
            return;
        };
        self.lanes.give_back(self.lane, kept, self.fit);
    }
}

/// Whether `error` says the session was gone before the statement could run: ended by the
/// server (`admin_shutdown`, `crash_shutdown`) or its connection closed. Not a silent peer
/// (timed out: sending again would double the wait) nor a server that refuses connections.
pub(in crate::store) fn session_ended(error: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        sqlx::Error::Database(database) => {
            matches!(database.code().as_deref(), Some("57P01" | "57P02"))
        }
        sqlx::Error::Io(error) => matches!(
            error.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected
        ),
        _ => false,
    }
}

/// Whether a failure to connect may pass by itself: the server unreachable, starting or
/// shutting down, or out of connection slots; not refused credentials or a missing database.
fn passing(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(error) => {
            matches!(error.code().as_deref(), Some("57P03" | "53300" | "57P01"))
        }
        _ => false,
    }
}
