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

use anyhow::Context;
use futures_util::FutureExt;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::announcements::{Announcement, CHANNEL, Heartbeats, SchemaTags, Scope};
use crate::background::Background;
use crate::config::Settings;
use crate::store::postgres::schema::INSUFFICIENT_PRIVILEGE;
use crate::store::postgres::wal::insert_position;
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

impl FeedSettings {
    /// From the settings: heartbeats four times within the staleness bound, a new connection
    /// when none has come back for twice the bound, `DATABASE_FEED_URL` (else `pool`'s) to
    /// listen on, and the primary's WAL positions when standbys need a watermark.
    pub fn new(settings: &Settings, pool: &PgPool, follow_positions: bool) -> anyhow::Result<Self> {
        let bound = settings.listing_cache.max_staleness();
        let listen = match &settings.database.feed_url {
            Some(url) => url
                .expose_secret()
                .parse::<PgConnectOptions>()
                .context("DATABASE_FEED_URL is not a usable Postgres URL")?,
            None => (*pool.connect_options()).clone(),
        };
        Ok(Self {
            listen,
            notify: (*pool.connect_options()).clone(),
            heartbeat: bound / 4,
            give_up_after: (bound * 2).max(Duration::from_secs(1)),
            connect_within: Duration::from_millis(settings.database.connect_timeout_ms),
            follow_positions,
        })
    }
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
                Ok(Err(error)) => error,
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
    tags: SchemaTags,
}

async fn listen(settings: &FeedSettings) -> Result<Feed, String> {
    // A pool per connection: a connection lost without a word may linger in its pool's
    // release, and must not hold the place of the next one.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(settings.listen.clone().application_name(APPLICATION_NAME));
    let said = |error: sqlx::Error| error.to_string();
    let mut listener = PgListener::connect_with(&pool).await.map_err(said)?;
    // A lost connection is reported rather than silently re-made, so the gap is known.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await.map_err(said)?;
    let position = match settings.follow_positions {
        true => Some(insert_position(&mut listener).await.map_err(said)?),
        false => None,
    };
    let key: Vec<u8> = sqlx::raw_sql("select key from listing_announcement_key")
        .fetch_one(&mut listener)
        .await
        .and_then(|row| sqlx::Row::try_get(&row, 0))
        .map_err(
            |error| match error.as_database_error().and_then(|e| e.code()) {
                Some(code) if code == INSUFFICIENT_PRIVILEGE => format!(
                    "{error}: as the tables' owner, grant select on listing_announcement_key to \
                 the service's role (docs/operations.md, Database roles)"
                ),
                _ => error.to_string(),
            },
        )?;
    Ok(Feed {
        listener,
        position,
        tags: SchemaTags::new(&key),
    })
}

/// Notifications handled before the feed looks at its watchdog again and lets other work run:
/// a backlog (a burst of writes, or a flood a stranger sent) is worked through in such turns.
const TURN: usize = 1_000;

/// Reports what is heard until the connection is lost, a question asked on it goes
/// unanswered, or no heartbeat comes back for `give_up_after`; returns why it stopped.
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
                // Whatever else has arrived is handled with it, up to a turn's worth, and one
                // position covers all.
                let mut changed = false;
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(notification) = next {
                    match Announcement::read(notification.payload(), heartbeats, &mut feed.tags) {
                        Announcement::OwnHeartbeat(sent) => {
                            last_heard = Instant::now();
                            report(Change::Heard { sent });
                        }
                        Announcement::Changed(scope) => {
                            changed = true;
                            report(Change::Changed(scope));
                        }
                        Announcement::OthersHeartbeat | Announcement::Legacy => {}
                        Announcement::Untagged => ignore("an announcement without the schema's tag"),
                        Announcement::Repeated => ignore("an announcement heard before, sent again"),
                        Announcement::Unreadable => ignore("not an announcement of the schema"),
                    }
                    handled += 1;
                    if handled == TURN {
                        break;
                    }
                    next = match feed.listener.next_buffered() {
                        Some(buffered) => Some(buffered),
                        // What has arrived on the connection already, without waiting.
                        None => match feed.listener.try_recv().now_or_never() {
                            None => None,
                            Some(Ok(Some(arrived))) => Some(arrived),
                            Some(_) => return "connection lost",
                        },
                    };
                }
                // The one question asked while hearing, bounded by the heartbeat's interval: a
                // silent connection is given up within the staleness bound.
                if changed && settings.follow_positions {
                    let asked = insert_position(&mut feed.listener);
                    match tokio::time::timeout(settings.heartbeat, asked).await {
                        Ok(Ok(position)) => report(Change::Position(position)),
                        _ => return "the primary's position was not told in time",
                    }
                }
                if last_heard.elapsed() > settings.give_up_after {
                    return "no heartbeat came back";
                }
                tokio::task::yield_now().await;
            }
            _ = watchdog.tick() => {
                if last_heard.elapsed() > settings.give_up_after {
                    return "no heartbeat came back";
                }
            }
        }
    }
}

/// A notification nobody we trust sent: counted, and logged within a budget of its own.
fn ignore(why: &'static str) {
    metrics::counter!("agent_api_listing_announcements_ignored_total").increment(1);
    if telemetry::forged_announcements().allow() {
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
