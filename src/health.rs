//! What an instance knows of its own fitness, kept up to date in the background so that a
//! health check costs nothing (a stranger can ask `/readyz` as often as it likes): whether the
//! primary answered lately, and whether the schema is the one this build was made for.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::store;
use crate::store::postgres::schema::Schema;

/// How often the primary is asked, and how long an answer vouches for it.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const ANSWER_COUNTS_FOR: Duration = Duration::from_secs(3);
/// How often the schema is compared again: often while it lacks a migration or cannot be read
/// (so the instance serves as soon as the operator migrates, or grants), seldom otherwise.
const SCHEMA_BEHIND_EVERY: Duration = Duration::from_secs(1);
const SCHEMA_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Health {
    /// When the last probe was answered, if the primary answered it.
    answered: RwLock<Option<Instant>>,
    schema: RwLock<Schema>,
}

impl Health {
    /// Whether a balancer may send partners here: the primary answers and the schema is this
    /// build's (or a newer release's).
    pub fn is_ready(&self) -> bool {
        self.database_answers() && matches!(self.schema(), Schema::Current | Schema::Ahead { .. })
    }

    /// Whether the primary answered the last probe, made within the last few seconds.
    pub fn database_answers(&self) -> bool {
        self.answered
            .read()
            .expect("no writer panics")
            .is_some_and(|answered| answered.elapsed() < ANSWER_COUNTS_FOR)
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
                Schema::Behind { .. }
                | Schema::Unknown
                | Schema::Unreadable { .. }
                | Schema::Foreign { .. } => SCHEMA_BEHIND_EVERY,
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
        let answered = matches!(answer, Ok(Ok(()))).then(Instant::now);
        *self.answered.write().expect("no reader panics") = answered;
    }

    async fn compare_schema(&self, pool: &PgPool) {
        let compared =
            tokio::time::timeout(PROBE_EVERY, store::postgres::schema::compare(pool)).await;
        if let Ok(Ok(schema)) = compared {
            let mut held = self.schema.write().expect("no writer panics");
            if *held != schema {
                schema.log();
                *held = schema;
            }
        }
    }
}
