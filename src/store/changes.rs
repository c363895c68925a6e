//! The change feed: `LISTEN` on the channel migration 0700 announces every committed write to
//! the tables the caller-line list reads.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

pub const CHANNEL: &str = "agent_api_listing_changed";

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
/// until `pool` is closed, reconnecting after a loss.
pub fn follow(pool: &PgPool, mut report: impl FnMut(Change) + Send + 'static) {
    const RETRY: Duration = Duration::from_secs(1);
    let requests = pool.clone();
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    tokio::spawn(async move {
        let listen = async {
            loop {
                match listen(&own).await {
                    Ok(mut listener) => {
                        report(Change::Listening);
                        // A lost connection is reported here rather than silently re-made, so
                        // the caller hears of the gap.
                        listener.eager_reconnect(false);
                        while let Ok(Some(_)) = listener.try_recv().await {
                            report(Change::Committed);
                        }
                        report(Change::Deaf);
                        tracing::warn!("lost the change feed; pages are not cached meanwhile");
                    }
                    Err(error) => tracing::warn!(%error, "cannot listen for changes; retrying"),
                }
                tokio::time::sleep(RETRY).await;
            }
        };
        // Ends with the request pool, so tests' databases can be dropped behind them.
        tokio::select! {
            _ = listen => {}
            () = requests.close_event() => {}
        }
        own.close().await;
    });
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
