//! The database as requests meet it: the primary, and the hot standbys that take the list
//! statement of cache misses. Every statement is bounded on this side too, since a peer that
//! goes silent without closing (a frozen VM, a stalled disk, a firewall dropping the flow)
//! enforces no `statement_timeout`: on the primary, the statement timeout and a second; on a
//! standby, `replica_deadline_ms` from the start of the read, after which the read goes to the
//! primary and the standby is passed over until a probe finds it fit. Reads are counted by
//! target and reason (`agent_api_db_reads_total`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use super::postgres::lanes::{Lanes, session_ended};
use super::postgres::session::{Protocol, Session, bounded, silent};
use super::replicas::Replicas;
use crate::config::{DatabaseSettings, PoolMode};

/// How much longer than its `statement_timeout` a statement on the primary may take before it
/// is given up on here: the server's own timeout answers well within it.
const PRIMARY_MARGIN: Duration = Duration::from_secs(1);

/// The position a standby must have replayed to serve a read that begins now, or why no
/// standby may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// The primary's WAL position, in bytes, after the last change this instance heard of.
    Replayed(u64),
    /// The feed is not proven to hear: a standby could miss commits nobody announced.
    FeedNotTrusted,
    /// A change was heard and the position after it is not known yet.
    PositionPending,
}

#[derive(Clone)]
pub struct Database {
    /// For the server's own probes and checks (health, start-up, the feed's setup).
    primary: PgPool,
    /// The primary's connections for statements (`on_primary`, `on_primary_in_transaction`).
    lanes: Arc<Lanes>,
    replicas: Option<Arc<Replicas>>,
    primary_deadline: Duration,
    /// Whether the primary is reached through a transaction pooler: its statements then may not
    /// be named and kept.
    behind_transaction_pooler: bool,
    statement_timeout_ms: u64,
}

impl Database {
    pub fn new(
        primary: PgPool,
        replicas: Option<Arc<Replicas>>,
        settings: &DatabaseSettings,
    ) -> Self {
        let lanes = Lanes::new(
            primary.connect_options().as_ref().clone(),
            settings.max_connections,
            Duration::from_millis(settings.acquire_timeout_ms),
        );
        Self {
            primary,
            lanes: Arc::new(lanes),
            replicas,
            primary_deadline: Duration::from_millis(settings.statement_timeout_ms) + PRIMARY_MARGIN,
            behind_transaction_pooler: settings.pool_mode == PoolMode::Transaction,
            statement_timeout_ms: settings.statement_timeout_ms,
        }
    }

    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// The primary's connections for statements open, and of those idle.
    pub fn connection_counts(&self) -> (usize, usize) {
        self.lanes.counts()
    }

    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_deref()
    }

    /// Runs `statement` on the primary, bounded; behind a transaction pooler in one message
    /// (`query` then writes its values in: `Session::one_message`).
    pub(super) async fn on_primary<T>(
        &self,
        statement: &'static str,
        query: impl AsyncFnOnce(Session<'_>) -> Result<T, sqlx::Error> + Clone,
    ) -> Result<T, sqlx::Error> {
        self.retried_on_primary(statement, self.one_message(), query)
            .await
    }

    /// Runs `statement` on the primary, bounded; behind a transaction pooler unnamed, in a
    /// transaction of its own (for the statements no partner waits for: housekeeping, the
    /// command line).
    pub(super) async fn on_primary_in_transaction<T>(
        &self,
        statement: &'static str,
        query: impl AsyncFnOnce(Session<'_>) -> Result<T, sqlx::Error> + Clone,
    ) -> Result<T, sqlx::Error> {
        self.retried_on_primary(statement, Protocol::InTransaction, query)
            .await
    }

    fn one_message(&self) -> Protocol {
        Protocol::OneMessage {
            statement_timeout_ms: self.statement_timeout_ms,
        }
    }

    /// Runs `statement` on the primary, sent as `behind_pooler` says behind a transaction
    /// pooler. A session the server ended (terminated by an operator, a restart, a pooler's) is
    /// found out only by the next statement sent on it: the statement, a read, is then sent
    /// again on another connection, up to one more time than the pool holds connections (each
    /// ended one fails at once).
    async fn retried_on_primary<T>(
        &self,
        statement: &'static str,
        behind_pooler: Protocol,
        query: impl AsyncFnOnce(Session<'_>) -> Result<T, sqlx::Error> + Clone,
    ) -> Result<T, sqlx::Error> {
        let protocol = match self.behind_transaction_pooler {
            true => behind_pooler,
            false => Protocol::Named,
        };
        let mut attempts = self.lanes.max_connections();
        loop {
            match self
                .once_on_primary(statement, protocol, query.clone())
                .await
            {
                Err(error) if attempts > 0 && session_ended(&error) => attempts -= 1,
                outcome => return outcome,
            }
        }
    }

    async fn once_on_primary<T>(
        &self,
        statement: &'static str,
        protocol: Protocol,
        query: impl AsyncFnOnce(Session<'_>) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut lease = self.lanes.acquire().await?;
        bounded(
            &mut lease,
            protocol,
            self.primary_deadline,
            statement,
            "primary",
            query,
        )
        .await
        .unwrap_or_else(|| Err(silent(self.primary_deadline)))
    }

    /// Runs `statement` on a standby that has replayed to `watermark`, or on the primary when
    /// none may or none answers in time (`on_primary`).
    pub(super) async fn read<T>(
        &self,
        watermark: Watermark,
        statement: &'static str,
        query: impl AsyncFn(Session<'_>) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        if let Some(replicas) = &self.replicas {
            let reason = match watermark {
                Watermark::FeedNotTrusted => "feed_not_trusted",
                Watermark::PositionPending => "position_pending",
                Watermark::Replayed(watermark) => {
                    match replicas.read(watermark, statement, &query).await {
                        Ok(read) => {
                            count("replica", "caught_up");
                            return Ok(read);
                        }
                        Err(passed_over) => passed_over.reason(),
                    }
                }
            };
            count("primary", reason);
        }
        self.on_primary(statement, async |session| query(session).await)
            .await
    }
}

fn count(target: &'static str, reason: &'static str) {
    metrics::counter!("agent_api_db_reads_total", "target" => target, "reason" => reason)
        .increment(1);
}
