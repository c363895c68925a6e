//! The change feed: `LISTEN` on the channel migration 0700 announces every committed write to
//! the tables the caller-line list reads.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

pub const CHANNEL: &str = "agent_api_listing_changed";

/// How the listening session names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "agent-api change feed";

/// What the feed reports, in order: `Listening`, then any number of `Committed`, then `Deaf`
/// when the connection is lost, and `Listening` again once it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Listening from now on; what was committed before is not reported.
    Listening,
    /// A transaction that wrote to a listed table has committed.
    Committed,
    /// Not listening: changes from now on may go unreported.
    Deaf,
}

/// Follows the feed on a connection of its own (not one of the pool's, which serve requests)
/// until `pool` is closed, reconnecting after a loss. Every `heartbeat` the connection must
/// answer a query within another `heartbeat`: a connection cut without a word (a firewall
/// dropping an idle flow) would otherwise leave the feed silent while changes go unreported,
/// and the traffic itself keeps such flows alive.
pub fn follow(pool: &PgPool, heartbeat: Duration, mut report: impl FnMut(Change) + Send + 'static) {
    const RETRY: Duration = Duration::from_secs(1);
    let requests = pool.clone();
    let options = (*pool.connect_options()).clone();
    tokio::spawn(async move {
        let feed = async {
            // Failed attempts since the feed was last heard: only the first is a warning, so
            // an outage logs one line here rather than one a second.
            let mut failures = 0_u32;
            let mut was_lost = false;
            loop {
                match listen(&options).await {
                    Ok(listener) => {
                        if was_lost {
                            tracing::info!(failures, "listening for changes again");
                        }
                        failures = 0;
                        report(Change::Listening);
                        hear(listener, heartbeat, &mut report).await;
                        report(Change::Deaf);
                        was_lost = true;
                        tracing::warn!("lost the change feed; pages are not cached meanwhile");
                    }
                    Err(error) => {
                        failures += 1;
                        was_lost = true;
                        if failures == 1 {
                            tracing::warn!(%error, "cannot listen for changes; retrying every second");
                        } else {
                            tracing::debug!(%error, failures, "cannot listen for changes");
                        }
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
        };
        // Ends with the request pool, so tests' databases can be dropped behind them.
        tokio::select! {
            _ = feed => {}
            () = requests.close_event() => {}
        }
    });
}

async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool per connection: a connection lost without a word may linger in its pool's
    // release, and must not hold the place of the next one.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options.clone().application_name(APPLICATION_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is reported rather than silently re-made, so the gap is known.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Reports each announcement until the connection is lost or misses a heartbeat.
async fn hear(mut listener: PgListener, heartbeat: Duration, report: &mut impl FnMut(Change)) {
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(_)) => report(Change::Committed),
                _ => return,
            },
            _ = beat.tick() => {
                let answer = sqlx::query("select 1").execute(&mut listener);
                if !matches!(tokio::time::timeout(heartbeat, answer).await, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
