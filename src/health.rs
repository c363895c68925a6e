//! What an instance knows of its own fitness, kept up to date in the background so that a
//! health check costs nothing (a stranger can ask `/readyz` as often as it likes): whether the
//! primary answered lately, and whether the schema is the one this build was made for.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::store;
use crate::store::schema::Schema;

/// How often the primary is asked, and how long an answer vouches for it.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const ANSWER_COUNTS_FOR: Duration = Duration::from_secs(3);
/// How often the schema is compared again: often while it lacks a migration (so the instance
/// serves as soon as the operator migrates), seldom otherwise.
const SCHEMA_BEHIND_EVERY: Duration = Duration::from_secs(1);
const SCHEMA_EVERY: Duration = Duration::from_secs(30);

pub struct Health {
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last probe, if the primary answered it; 0 if not.
    answered: AtomicU64,
    schema: RwLock<Schema>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            answered: AtomicU64::new(0),
            schema: RwLock::new(Schema::Unknown),
        }
    }
}

impl Health {
    /// Whether a balancer may send partners here: the primary answers and the schema is this
    /// build's (or a newer release's).
    pub fn is_ready(&self) -> bool {
        self.database_answers() && matches!(self.schema(), Schema::Current | Schema::Ahead { .. })
    }

    /// Whether the primary answered the last probe, made within the last few seconds.
    pub fn database_answers(&self) -> bool {
        let answered = self.answered.load(SeqCst);
        answered > 0
            && Instant::now().saturating_duration_since(self.epoch)
                < Duration::from_nanos(answered) + ANSWER_COUNTS_FOR
    }

    pub fn schema(&self) -> Schema {
        self.schema.read().expect("no writer panics").clone()
    }

    /// Asks the primary and compares the schema now (at start, before serving).
    pub async fn check(&self, pool: &PgPool) {
        self.probe_database(pool).await;
        self.compare_schema(pool).await;
        self.report();
    }

    /// `agent_api_ready`, for alerts: 1 while ready.
    fn report(&self) {
        metrics::gauge!("agent_api_ready").set(f64::from(u8::from(self.is_ready())));
    }

    /// Keeps what is known current, until the application stops.
    pub async fn watch(&self, pool: PgPool) {
        let mut compared = Instant::now();
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            self.probe_database(&pool).await;
            let every = match self.schema() {
                Schema::Current | Schema::Ahead { .. } => SCHEMA_EVERY,
                Schema::Behind { .. } | Schema::Unknown => SCHEMA_BEHIND_EVERY,
            };
            if compared.elapsed() >= every {
                compared = Instant::now();
                self.compare_schema(&pool).await;
            }
            self.report();
        }
    }

    /// The last probe's answer counts, for a few seconds: an outage shows at the next probe.
    async fn probe_database(&self, pool: &PgPool) {
        let answer = tokio::time::timeout(PROBE_EVERY, store::ping(pool)).await;
        let answered = match answer {
            Ok(Ok(())) => {
                let since = Instant::now().saturating_duration_since(self.epoch);
                since.as_nanos().max(1) as u64
            }
            _ => 0,
        };
        self.answered.store(answered, SeqCst);
    }

    async fn compare_schema(&self, pool: &PgPool) {
        let compared = tokio::time::timeout(PROBE_EVERY, store::schema::compare(pool)).await;
        if let Ok(Ok(schema)) = compared {
            let mut held = self.schema.write().expect("no writer panics");
            if *held != schema {
                schema.log();
                *held = schema;
            }
        }
    }
}
