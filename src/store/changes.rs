//! The change feed: `LISTEN` on the channel the migrations announce every committed write on,
//! naming what it changed (migration 0800), and a heartbeat that proves the feed still hears.
//!
//! The heartbeat is itself an announcement, sent through a connection of `DATABASE_URL` (through
//! the pooler, if there is one) and heard on the listening connection: hearing the one sent at
//! instant `t` proves every commit before `t` was heard, since Postgres delivers notifications in
//! commit order. A feed that cannot hear (a firewall cut it silently, or `LISTEN` went through a
//! transaction pooler) is therefore never trusted: its heartbeats do not come back.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const CHANNEL: &str = "agent_api_listing_changed";

/// How the listening session names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "agent-api change feed";

/// How the heartbeat's sending session names itself.
pub const HEARTBEAT_APPLICATION_NAME: &str = "agent-api heartbeat";

/// What an announcement says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The lines of these (partner, tenant) pairs.
    Pairs(Vec<(Uuid, Uuid)>),
    /// These partners' own rows or their customers' and sub-accounts': every page of theirs,
    /// and whether their tokens are accepted.
    Partners(Vec<Uuid>),
    /// These tenants' rows: their pages for every partner, and which tenant is the default.
    Tenants(Vec<Uuid>),
    Everything,
}

impl Scope {
    /// Reads an announcement of migration 0800; one it cannot read (a future format, an older
    /// migration's table name) is taken as `Everything`, which is always safe.
    pub fn parse(payload: &str) -> Self {
        let (kind, ids) = payload.split_once(' ').unwrap_or((payload, ""));
        let uuids =
            || -> Option<Vec<Uuid>> { ids.split(' ').map(|id| Uuid::try_parse(id).ok()).collect() };
        let parsed = match kind {
            "pairs" => ids
                .split(' ')
                .map(|pair| {
                    let (partner, tenant) = pair.split_once('/')?;
                    Some((
                        Uuid::try_parse(partner).ok()?,
                        Uuid::try_parse(tenant).ok()?,
                    ))
                })
                .collect::<Option<Vec<_>>>()
                .map(Self::Pairs),
            "partners" => uuids().map(Self::Partners),
            "tenants" => uuids().map(Self::Tenants),
            _ => None,
        };
        parsed.unwrap_or(Self::Everything)
    }
}

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
    /// Whether to read WAL positions, which replica reads wait for.
    pub follow_positions: bool,
}

/// Follows the feed on connections of its own (not the pool's, which serve requests) until
/// `pool` is closed, reconnecting after a loss.
pub fn follow(
    pool: &PgPool,
    settings: FeedSettings,
    mut report: impl FnMut(Change) + Send + 'static,
) {
    const RETRY: Duration = Duration::from_secs(1);
    let requests = pool.clone();
    let epoch = Instant::now();
    // Heartbeats from this process only: other instances on the channel send their own.
    let nonce = Uuid::new_v4().simple().to_string();
    tokio::spawn(send_heartbeats(
        requests.clone(),
        settings.notify.clone(),
        settings.heartbeat,
        nonce.clone(),
        epoch,
    ));
    tokio::spawn(async move {
        let feed = async {
            // Failed attempts since the feed was last heard: only the first is a warning, so
            // an outage logs one line here rather than one a second.
            let mut failures = 0_u32;
            let mut was_lost = false;
            loop {
                match listen(&settings).await {
                    Ok((listener, position)) => {
                        if was_lost {
                            tracing::info!(failures, "listening for changes again");
                        }
                        failures = 0;
                        report(Change::Listening { position });
                        let heartbeats = Heartbeats {
                            nonce: &nonce,
                            epoch,
                        };
                        let lost = hear(listener, &settings, heartbeats, &mut report).await;
                        report(Change::Deaf);
                        was_lost = true;
                        tracing::warn!(
                            reason = lost,
                            "lost the change feed; memory is not trusted meanwhile"
                        );
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

async fn listen(settings: &FeedSettings) -> Result<(PgListener, Option<u64>), sqlx::Error> {
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
    Ok((listener, position))
}

/// The primary's WAL insert position, as a number of bytes.
async fn insert_position(listener: &mut PgListener) -> Result<u64, sqlx::Error> {
    let position: i64 = sqlx::query_scalar("select (pg_current_wal_insert_lsn() - '0/0')::bigint")
        .fetch_one(&mut *listener)
        .await?;
    Ok(position as u64)
}

/// What tells this process's heartbeats from the rest of the channel.
#[derive(Clone, Copy)]
struct Heartbeats<'a> {
    nonce: &'a str,
    epoch: Instant,
}

impl Heartbeats<'_> {
    /// The payload of a heartbeat sent at `sent`.
    fn payload(self, sent: Instant) -> String {
        format!(
            "heartbeat {} {}",
            self.nonce,
            (sent - self.epoch).as_nanos()
        )
    }

    /// `Some(None)`: a heartbeat, but another process's; `None`: not a heartbeat at all.
    fn sent(self, payload: &str) -> Option<Option<Instant>> {
        let rest = payload.strip_prefix("heartbeat ")?;
        let (nonce, nanos) = rest.split_once(' ')?;
        let nanos: u64 = nanos.parse().ok()?;
        Some((nonce == self.nonce).then(|| self.epoch + Duration::from_nanos(nanos)))
    }
}

/// Reports what is heard until the connection is lost or no heartbeat comes back for
/// `give_up_after`; returns why it stopped.
async fn hear(
    mut listener: PgListener,
    settings: &FeedSettings,
    heartbeats: Heartbeats<'_>,
    report: &mut impl FnMut(Change),
) -> &'static str {
    let mut last_heard = Instant::now();
    let mut watchdog = tokio::time::interval(settings.heartbeat);
    loop {
        tokio::select! {
            received = listener.try_recv() => {
                let Ok(Some(first)) = received else { return "connection lost" };
                // Whatever else has arrived is reported with it, and one position covers all.
                let mut changed = false;
                let mut next = Some(first);
                while let Some(notification) = next {
                    match heartbeats.sent(notification.payload()) {
                        Some(Some(sent)) => {
                            last_heard = Instant::now();
                            report(Change::Heard { sent });
                        }
                        Some(None) => {}
                        None => {
                            changed = true;
                            report(Change::Changed(Scope::parse(notification.payload())));
                        }
                    }
                    next = listener.next_buffered();
                }
                if changed && settings.follow_positions {
                    match insert_position(&mut listener).await {
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

/// Sends a heartbeat every `every` on a connection of its own, remade after any failure, until
/// `requests` closes.
async fn send_heartbeats(
    requests: PgPool,
    options: PgConnectOptions,
    every: Duration,
    nonce: String,
    epoch: Instant,
) {
    let heartbeats = Heartbeats {
        nonce: &nonce,
        epoch,
    };
    let options = options.application_name(HEARTBEAT_APPLICATION_NAME);
    let mut connection: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = async {
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
            let sent = sqlx::query("select pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(heartbeats.payload(Instant::now()))
                .execute(open);
            if !matches!(tokio::time::timeout(every, sent).await, Ok(Ok(_))) {
                connection = None;
            }
        }
    };
    tokio::select! {
        () = beat => {}
        () = requests.close_event() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const T: Uuid = Uuid::from_u128(2);

    #[test]
    fn announcements_of_migration_0800_are_read() {
        assert_eq!(
            Scope::parse(&format!("pairs {P}/{T} {T}/{P}")),
            Scope::Pairs(vec![(P, T), (T, P)])
        );
        assert_eq!(
            Scope::parse(&format!("partners {P} {T}")),
            Scope::Partners(vec![P, T])
        );
        assert_eq!(
            Scope::parse(&format!("tenants {T}")),
            Scope::Tenants(vec![T])
        );
        assert_eq!(Scope::parse("all"), Scope::Everything);
    }

    #[test]
    fn anything_unreadable_means_everything() {
        for payload in [
            "",
            "caller_lines",
            "pairs",
            "pairs x/y",
            &format!("pairs {P}"),
            "partners 1",
            "tenants  ",
        ] {
            assert_eq!(Scope::parse(payload), Scope::Everything, "{payload:?}");
        }
    }

    #[test]
    fn only_this_processs_heartbeats_count() {
        let epoch = Instant::now();
        let ours = Heartbeats { nonce: "a1", epoch };
        let sent = epoch + Duration::from_millis(1500);
        assert_eq!(ours.sent(&ours.payload(sent)), Some(Some(sent)));
        let theirs = Heartbeats { nonce: "b2", epoch };
        assert_eq!(ours.sent(&theirs.payload(sent)), Some(None));
        assert_eq!(ours.sent(&format!("partners {P}")), None);
    }
}
