//! The deployment under test, as docs/operations.md describes one, every part real and the
//! run's own: a primary and a `pg_basebackup` standby, Redis shared by two instances of
//! `agent-api serve` (each as the documented read-only role, its change feed through a proxy
//! the nemesis can cut or delay, its misses read from the standby), and how each part is
//! broken and healed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::history::FaultKind;
use super::support::MIGRATOR;
use super::support::cluster::Cluster;
use super::support::process::{Serving, agent_api, run_ok, spawn_serve};
use super::support::proxy::{Proxy, through};
use super::support::redis::Redis;
use super::support::roles::{self, Role};

pub struct Deployment {
    pub primary: Cluster,
    pub standby: Cluster,
    redis: Mutex<Redis>,
    /// The superuser's pool on the primary: set-up, and ending the instances' sessions.
    pub owner: PgPool,
    pub writer: Role,
    reader: Role,
    instance_env: Vec<(String, String)>,
    pub instances: Vec<Instance>,
}

/// One `agent-api serve` and the proxy its change feed goes through.
pub struct Instance {
    feed: Proxy,
    serving: Mutex<Option<Serving>>,
    port: AtomicU16,
}

impl Instance {
    /// `path` on the instance as it listens now (after a restart, on its new port).
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.port.load(Ordering::SeqCst)
        )
    }
}

impl Deployment {
    /// The primary, migrated and seeded with the demo data, the documented roles made on it;
    /// the standby, Redis, and `instances` instances trusting kept pages for `staleness`.
    pub async fn start(instances: usize, staleness: Duration) -> Self {
        let primary = Cluster::create();
        primary.start();
        let owner = PgPoolOptions::new()
            .max_connections(2)
            .connect(&primary.url())
            .await
            .unwrap();
        MIGRATOR.run(&owner).await.unwrap();
        run_ok(agent_api(Some(&primary.url())).arg("seed-demo"));
        let reader = roles::reader(&owner).await;
        let writer = roles::writer(&owner).await;
        let standby = Cluster::standby_of(&primary);
        let redis = Redis::start();
        let reader_url = roles::url_as(&owner, &reader);
        let instance_env = vec![
            (
                "DATABASE_REPLICA_URLS".into(),
                roles::with_credentials(&standby.url(), &reader),
            ),
            ("APP__RATE_LIMIT__ENABLED".into(), "true".into()),
            ("APP__RATE_LIMIT__REDIS_URL".into(), redis.url()),
            ("APP__RATE_LIMIT__INSTANCES".into(), instances.to_string()),
            // The limits are there to be shared through Redis, not to refuse the readers (whose
            // revoked tokens count against their address).
            ("APP__RATE_LIMIT__PER_SECOND".into(), "100000".into()),
            ("APP__RATE_LIMIT__BURST".into(), "100000".into()),
            (
                "APP__RATE_LIMIT__ANONYMOUS_PER_SECOND".into(),
                "100000".into(),
            ),
            ("APP__RATE_LIMIT__ANONYMOUS_BURST".into(), "100000".into()),
            (
                "APP__LISTING_CACHE__MAX_STALENESS_MS".into(),
                staleness.as_millis().to_string(),
            ),
        ];
        let mut deployment = Self {
            primary,
            standby,
            redis: Mutex::new(redis),
            owner,
            writer,
            reader,
            instance_env,
            instances: Vec::new(),
        };
        for _ in 0..instances {
            let feed = Proxy::start(([127, 0, 0, 1], deployment.primary.port()).into()).await;
            let feed_url = through(&reader_url, &feed);
            let instance = Instance {
                feed,
                serving: Mutex::new(None),
                port: AtomicU16::new(0),
            };
            let serving = deployment.serve(&reader_url, &feed_url);
            instance.port.store(serving.port, Ordering::SeqCst);
            *instance.serving.lock().unwrap() = Some(serving);
            deployment.instances.push(instance);
        }
        deployment
    }

    fn serve(&self, reader_url: &str, feed_url: &str) -> Serving {
        let mut env: Vec<(&str, &str)> = self
            .instance_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("DATABASE_FEED_URL", feed_url));
        spawn_serve(reader_url, &env)
    }

    /// A pool of the writer role on the primary, quick to give up while it is down.
    pub fn writer_pool(&self) -> PgPool {
        writer_pool(&self.owner, &self.writer)
    }

    /// Breaks what `kind` names (on `instance`, for one instance's faults).
    pub async fn inject(&self, kind: FaultKind, instance: usize) {
        match kind {
            FaultKind::FeedCut => self.instances[instance].feed.swallow(),
            FaultKind::FeedDelayed => self.instances[instance]
                .feed
                .delay(Duration::from_millis(700)),
            FaultKind::StandbyFrozen => self.standby.freeze(),
            FaultKind::ReplayPaused => self.on_standby("select pg_wal_replay_pause()").await,
            FaultKind::StandbyRestarted => blocking(|| self.standby.stop()),
            FaultKind::RedisStopped => self.redis.lock().unwrap().stop(),
            FaultKind::InstanceRestarted => {
                // SIGKILL: nothing is closed in order, as in a crash or an OOM kill.
                let serving = self.instances[instance].serving.lock().unwrap().take();
                drop(serving);
            }
            FaultKind::SessionsTerminated => self.terminate_sessions().await,
            FaultKind::PrimaryRestarted => blocking(|| self.primary.stop()),
        }
    }

    /// Heals what `inject` broke; returns once it is whole again.
    pub async fn heal(&self, kind: FaultKind, instance: usize) {
        match kind {
            FaultKind::FeedCut => self.instances[instance].feed.pass(),
            FaultKind::FeedDelayed => self.instances[instance].feed.delay(Duration::ZERO),
            FaultKind::StandbyFrozen => self.standby.thaw(),
            FaultKind::ReplayPaused => self.on_standby("select pg_wal_replay_resume()").await,
            FaultKind::StandbyRestarted => blocking(|| self.standby.start()),
            FaultKind::RedisStopped => self.redis.lock().unwrap().restart(),
            FaultKind::InstanceRestarted => {
                let reader_url = roles::url_as(&self.owner, &self.reader);
                let feed_url = through(&reader_url, &self.instances[instance].feed);
                let serving = blocking(|| self.serve(&reader_url, &feed_url));
                let instance = &self.instances[instance];
                instance.port.store(serving.port, Ordering::SeqCst);
                *instance.serving.lock().unwrap() = Some(serving);
            }
            // Ended once more as the fault ends: its window holds two rounds of reconnecting.
            FaultKind::SessionsTerminated => self.terminate_sessions().await,
            FaultKind::PrimaryRestarted => blocking(|| self.primary.start()),
        }
    }

    /// Ends every session of the service's role, on the primary and the standby, as an
    /// operator's `pg_terminate_backend` or a pooler's restart does.
    async fn terminate_sessions(&self) {
        let statement = format!(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = '{}'",
            self.reader.name
        );
        self.on_primary(&statement).await;
        self.on_standby(&statement).await;
    }

    async fn on_primary(&self, statement: &str) {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&self.owner)
            .await;
    }

    /// `statement` as the superuser on the standby; given up after two seconds (the standby may
    /// be frozen by another fault).
    async fn on_standby(&self, statement: &str) {
        let url = self.standby.url();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut connection = PgConnection::connect(&url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut connection)
                .await
        })
        .await;
    }
}

fn writer_pool(owner: &PgPool, writer: &Role) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&roles::url_as(owner, writer))
        .unwrap()
}

/// `work` (a process started or stopped, and waited for) without holding up the runtime's
/// other tasks.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}
