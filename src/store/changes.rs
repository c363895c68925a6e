//! The change feed: `LISTEN` on the channel the schema announces every committed write on,
//! naming what it changed (`announcements`), and a heartbeat that proves the feed still hears.
//!
//! The heartbeat is itself an announcement, sent through a connection of `DATABASE_URL` (through
//! the pooler, if there is one) and heard on the listening connection: hearing the one sent at
//! instant `t` proves every commit before `t` was heard, since Postgres delivers notifications in
//! commit order. A feed that cannot hear (a firewall cut it silently, or `LISTEN` went through a
//! transaction pooler) is therefore never trusted: its heartbeats do not come back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::announcements::{Announcement, CHANNEL, Heartbeats, Scope};
use super::replicas::insert_position;
use crate::background::Background;
use crate::telemetry;

/// How the listening session names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "agent-api change feed";

/// How the heartbeat's sending session names itself.
pub const HEARTBEAT_APPLICATION_NAME: &str = "agent-api heartbeat";

/// What the feed reports, in order: `Listening`, then changes and heartbeats, then `Deaf` when
/// the connection is lost or stops proving itself, and `Listening` again once it is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Listening from now on; what was committed before is unknown. `position` is the primary's
    /// WAL insert position read after `LISTEN` took effect (when positions are followed).
    Listening { position: Option<u64> },
    /// A committed transaction changed this scope.
    Changed(Scope),
    /// The primary's WAL insert position, read after the changes just reported were heard: at or
    /// past their commits, since a notification is delivered only after its commit.
    Position(u64),
    /// Every commit before `sent` has been heard.
    Heard { sent: Instant },
    /// Not listening, or not proven to: changes from now on may go unreported.
    Deaf,
}

/// Where and how the feed listens.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// A direct session with the primary: `LISTEN` needs one (no transaction pooler).
    pub listen: PgConnectOptions,
    /// Where heartbeats are sent from: `DATABASE_URL`, the way requests reach the database.
    pub notify: PgConnectOptions,
    /// How often a heartbeat is sent.
    pub heartbeat: Duration,
    /// Without a heartbeat heard for this long, the connection is dropped and made anew.
    pub give_up_after: Duration,
    /// How long one attempt to connect and listen may take: a path that drops packets
    /// silently is given up on and tried anew, so the feed is back soon after it heals.
    pub connect_within: Duration,
    /// Whether to read WAL positions, which replica reads wait for.
    pub follow_positions: bool,
}

/// Follows the feed on connections of its own (not the pool's, which serve requests),
/// reconnecting after a loss, and sends its heartbeats, both until `background` stops.
pub fn follow(
    background: &Background,
    settings: FeedSettings,
    mut report: impl FnMut(Change) + Send + 'static,
) {
    const RETRY: Duration = Duration::from_secs(1);
    // Heartbeats from this process only: other instances on the channel send their own.
    let heartbeats = Arc::new(Heartbeats::new());
    background.spawn(send_heartbeats(
        settings.notify.clone(),
        settings.heartbeat,
        heartbeats.clone(),
    ));
    background.spawn(async move {
        // Failed attempts since the feed was last heard: only the first is a warning, so an
        // outage logs one line here rather than one a second.
        let mut failures = 0_u32;
        let mut was_lost = false;
        loop {
            let attempt = tokio::time::timeout(settings.connect_within, listen(&settings)).await;
            let timed_out = attempt.is_err();
            let error = match attempt {
                Ok(Ok(feed)) => {
                    if was_lost {
                        tracing::info!(failures, "listening for changes again");
                    }
                    failures = 0;
                    report(Change::Listening {
                        position: feed.position,
                    });
                    let lost = hear(feed, &settings, &heartbeats, &mut report).await;
                    report(Change::Deaf);
                    was_lost = true;
                    tracing::warn!(
                        reason = lost,
                        "lost the change feed; memory is not trusted meanwhile"
                    );
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Ok(Err(error)) => error.to_string(),
                // Nothing came back: try again at once, the wait was the timeout.
                Err(_) => format!("no answer within {:?}", settings.connect_within),
            };
            failures += 1;
            was_lost = true;
            if failures == 1 {
                tracing::warn!(%error, "cannot listen for changes; retrying");
            } else {
                tracing::debug!(%error, failures, "cannot listen for changes");
            }
            if !timed_out {
                tokio::time::sleep(RETRY).await;
            }
        }
    });
}

/// A listening connection, and where the primary stood when it began to listen.
struct Feed {
    listener: PgListener,
    position: Option<u64>,
    /// The schema's epoch of `all` announcements: one at or below it was heard already.
    epoch: u64,
}

async fn listen(settings: &FeedSettings) -> Result<Feed, sqlx::Error> {
    // A pool per connection: a connection lost without a word may linger in its pool's
    // release, and must not hold the place of the next one.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(settings.listen.clone().application_name(APPLICATION_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is reported rather than silently re-made, so the gap is known.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    let position = match settings.follow_positions {
        true => Some(insert_position(&mut listener).await?),
        false => None,
    };
    let epoch = everything_epoch(&mut listener).await?;
    Ok(Feed {
        listener,
        position,
        epoch,
    })
}

/// The last epoch the schema's own functions announced `all` with (migration 1200).
async fn everything_epoch(listener: &mut PgListener) -> Result<u64, sqlx::Error> {
    let epoch: i64 = sqlx::query_scalar("select listing_everything_epoch()")
        .fetch_one(&mut *listener)
        .await?;
    Ok(epoch as u64)
}

/// Reports what is heard until the connection is lost or no heartbeat comes back for
/// `give_up_after`; returns why it stopped.
async fn hear(
    mut feed: Feed,
    settings: &FeedSettings,
    heartbeats: &Heartbeats,
    report: &mut impl FnMut(Change),
) -> &'static str {
    let mut last_heard = Instant::now();
    let mut watchdog = tokio::time::interval(settings.heartbeat);
    loop {
        tokio::select! {
            received = feed.listener.try_recv() => {
                let Ok(Some(first)) = received else { return "connection lost" };
                // Whatever else has arrived is reported with it, and one position covers all.
                let mut changed = false;
                let mut next = Some(first);
                while let Some(notification) = next {
                    match Announcement::read(notification.payload(), heartbeats) {
                        Announcement::OwnHeartbeat(sent) => {
                            last_heard = Instant::now();
                            report(Change::Heard { sent });
                        }
                        Announcement::OthersHeartbeat => {}
                        Announcement::Changed(scope) => {
                            changed = true;
                            report(Change::Changed(scope));
                        }
                        Announcement::Everything { epoch } if epoch > feed.epoch => {
                            let Ok(reached) = everything_epoch(&mut feed.listener).await else {
                                return "connection lost";
                            };
                            if epoch <= reached {
                                feed.epoch = epoch;
                                changed = true;
                                report(Change::Changed(Scope::Everything));
                            } else {
                                ignore("an 'all' whose epoch the schema never reached");
                            }
                        }
                        // A copy of one heard already.
                        Announcement::Everything { .. } => {}
                        Announcement::Unreadable => ignore("not an announcement of the schema"),
                    }
                    next = feed.listener.next_buffered();
                }
                if changed && settings.follow_positions {
                    match insert_position(&mut feed.listener).await {
                        Ok(position) => report(Change::Position(position)),
                        Err(_) => return "connection lost",
                    }
                }
            }
            _ = watchdog.tick() => {
                if last_heard.elapsed() > settings.give_up_after {
                    return "no heartbeat came back";
                }
            }
        }
    }
}

/// A notification nobody we trust sent: counted, and logged within the strangers' budget.
fn ignore(why: &'static str) {
    metrics::counter!("agent_api_listing_announcements_ignored_total").increment(1);
    if telemetry::strangers().allow() {
        tracing::warn!(why, "ignored a notification on the change feed's channel");
    }
}

/// Sends a heartbeat every `every` on a connection of its own, remade after any failure.
async fn send_heartbeats(options: PgConnectOptions, every: Duration, heartbeats: Arc<Heartbeats>) {
    let options = options.application_name(HEARTBEAT_APPLICATION_NAME);
    let mut connection: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if connection.is_none() {
            connection = tokio::time::timeout(every, PgConnection::connect_with(&options))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        // The simple protocol, one message: `DATABASE_URL` may go through a transaction
        // pooler. The payload is this process's own (hex digits, digits and spaces).
        let notify = format!(
            "select pg_notify('{CHANNEL}', '{}')",
            heartbeats.payload(Instant::now())
        );
        let sent = sqlx::raw_sql(sqlx::AssertSqlSafe(notify)).execute(open);
        if !matches!(tokio::time::timeout(every, sent).await, Ok(Ok(_))) {
            connection = None;
        }
    }
}
