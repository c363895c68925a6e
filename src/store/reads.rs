//! Where the list statement of a cache miss runs: on a standby that has replayed past the
//! watermark, when standbys are configured and the watermark is known; on the primary otherwise.
//! Every such read is counted by target and reason (`agent_api_db_reads_total`).

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::pool::acquire;
use super::replicas::Replicas;

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

pub struct Reads {
    primary: PgPool,
    replicas: Option<Arc<Replicas>>,
}

impl Reads {
    pub fn new(primary: PgPool, replicas: Option<Arc<Replicas>>) -> Self {
        Self { primary, replicas }
    }

    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_deref()
    }

    pub(super) async fn connection(
        &self,
        watermark: Watermark,
    ) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let Some(replicas) = &self.replicas else {
            return acquire(&self.primary).await;
        };
        let reason = match watermark {
            Watermark::FeedNotTrusted => "feed_not_trusted",
            Watermark::PositionPending => "position_pending",
            Watermark::Replayed(watermark) => match replicas.connection(watermark).await {
                Ok(connection) => {
                    count("replica", "caught_up");
                    return Ok(connection);
                }
                Err(passed_over) => passed_over.reason(),
            },
        };
        count("primary", reason);
        acquire(&self.primary).await
    }
}

fn count(target: &'static str, reason: &'static str) {
    metrics::counter!("agent_api_db_reads_total", "target" => target, "reason" => reason)
        .increment(1);
}
