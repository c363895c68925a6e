//! The one way anything is kept in memory: a ticket is taken before the read, what the read
//! returns is kept only if nothing it depends on was announced since, and it is answered only
//! while memory is trusted and it is still current.
//!
//! Concurrent misses of one key share one read (single flight): a request joins a read in
//! flight only if nothing the value depends on was announced between that read's ticket and the
//! request's arrival, so no request receives a value older than a change it could know of.
//! While memory is not trusted nothing is shared: every request reads for itself.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::Instrument;

use super::freshness::{Depends, Freshness, Stamp, Ticket};

/// Where kept values live: a bounded map, a single slot.
pub trait Slots<K, V>: Send + Sync {
    fn get(&self, key: &K) -> Option<(V, Stamp)>;
    fn put(&self, key: K, value: V, read_at: Stamp);
}

/// One value, without a key (the default tenant).
pub struct Slot<V>(Mutex<Option<(V, Stamp)>>);

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<V: Clone> Slot<V> {
    /// The value last kept, current or not.
    pub fn last(&self) -> Option<V> {
        let kept = self.0.lock().expect("no holder panics");
        kept.as_ref().map(|(value, _)| value.clone())
    }
}

impl<V: Clone + Send> Slots<(), V> for Slot<V> {
    fn get(&self, _: &()) -> Option<(V, Stamp)> {
        self.0.lock().expect("no holder panics").clone()
    }

    fn put(&self, _: (), value: V, read_at: Stamp) {
        *self.0.lock().expect("no holder panics") = Some((value, read_at));
    }
}

/// Whether a value just read may be kept (a page past the last is shared, never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Yes,
    No,
}

/// Where an answer came from, for the metrics of those who count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Kept and current.
    Hit,
    /// Read, by this request or by one in flight it joined.
    Miss,
    /// Read while memory is not trusted.
    Bypass,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// A read in flight: its ticket's stamp, and where its value will be published (`None` until
/// then; the sender dropped without a value means it failed or was abandoned).
struct Flight<V> {
    read_at: Stamp,
    value: watch::Receiver<Option<V>>,
}

pub struct Memory<K, V, S> {
    slots: S,
    freshness: Arc<Freshness>,
    depends: fn(&K) -> Depends,
    flights: Mutex<HashMap<K, Flight<V>>>,
}

impl<K, V, S> Memory<K, V, S>
where
    K: Clone + Eq + Hash,
    V: Clone,
    S: Slots<K, V>,
{
    pub fn new(slots: S, freshness: Arc<Freshness>, depends: fn(&K) -> Depends) -> Self {
        Self {
            slots,
            freshness,
            depends,
            flights: Mutex::default(),
        }
    }

    pub fn slots(&self) -> &S {
        &self.slots
    }

    /// The value kept for `key` while it is current and memory trusted.
    pub fn current(&self, key: &K) -> Option<V> {
        let ticket = self.freshness.ticket();
        if !ticket.trusted() {
            return None;
        }
        self.kept(key)
    }

    /// The current value for `key`: kept, or read by `read` under a fresh ticket (shared with
    /// concurrent requests for it while memory is trusted) and kept if still current.
    pub async fn get_or_read<E>(
        &self,
        key: &K,
        read: impl AsyncFnOnce(Ticket) -> Result<(V, Keep), E>,
    ) -> Result<(V, Outcome), E> {
        // For traces: what was decided (kept, missed, waited on another request's read, or
        // bypassed while memory is not trusted), around the read it led to.
        let span =
            tracing::debug_span!("cache", "agent_api.cache.decision" = tracing::field::Empty);
        let decided = |decision: &'static str| {
            span.record("agent_api.cache.decision", decision);
        };
        self.decide(key, read, decided)
            .instrument(span.clone())
            .await
    }

    async fn decide<E>(
        &self,
        key: &K,
        read: impl AsyncFnOnce(Ticket) -> Result<(V, Keep), E>,
        decided: impl Fn(&'static str),
    ) -> Result<(V, Outcome), E> {
        let ticket = self.freshness.ticket();
        if !ticket.trusted() {
            decided("bypassed");
            return self
                .read_and_keep(key, ticket, read)
                .await
                .map(|value| (value, Outcome::Bypass));
        }
        if let Some(value) = self.kept(key) {
            decided("kept");
            return Ok((value, Outcome::Hit));
        }
        match self.board(key, ticket) {
            Boarding::Joined(mut flight) => {
                decided("waited");
                if let Ok(published) = flight.wait_for(Option::is_some).await {
                    let value = published.clone().expect("waited for a value");
                    return Ok((value, Outcome::Miss));
                }
                // The read failed or was abandoned: this request reads for itself.
                self.read_and_keep(key, self.freshness.ticket(), read)
                    .await
                    .map(|value| (value, Outcome::Miss))
            }
            Boarding::Leading(leader) => {
                decided("missed");
                let value = self.read_and_keep(key, ticket, read).await?;
                leader.publish(value.clone());
                Ok((value, Outcome::Miss))
            }
        }
    }

    /// Reads under `ticket`, then keeps what was read if nothing it depends on changed since.
    pub async fn read_and_keep<E>(
        &self,
        key: &K,
        ticket: Ticket,
        read: impl AsyncFnOnce(Ticket) -> Result<(V, Keep), E>,
    ) -> Result<V, E> {
        let (value, keep) = read(ticket).await?;
        if keep == Keep::Yes {
            self.keep(key.clone(), value.clone(), ticket);
        }
        Ok(value)
    }

    /// Keeps `value`, read under `ticket`, if nothing it depends on changed since.
    pub fn keep(&self, key: K, value: V, ticket: Ticket) {
        if self
            .freshness
            .is_current((self.depends)(&key), ticket.stamp())
        {
            self.slots.put(key, value, ticket.stamp());
        }
    }

    fn kept(&self, key: &K) -> Option<V> {
        let (value, read_at) = self.slots.get(key)?;
        self.freshness
            .is_current((self.depends)(key), read_at)
            .then_some(value)
    }

    /// Joins the read of `key` in flight if its value will be current for a request arriving
    /// now; otherwise leads a new one under `ticket`.
    fn board(&self, key: &K, ticket: Ticket) -> Boarding<'_, K, V, S> {
        let mut flights = self.flights.lock().expect("no holder panics");
        if let Some(flight) = flights.get(key)
            && self
                .freshness
                .is_current((self.depends)(key), flight.read_at)
        {
            return Boarding::Joined(flight.value.clone());
        }
        let (publish, value) = watch::channel(None);
        flights.insert(
            key.clone(),
            Flight {
                read_at: ticket.stamp(),
                value: value.clone(),
            },
        );
        Boarding::Leading(Leader {
            memory: self,
            key: key.clone(),
            publish,
            value,
        })
    }
}

enum Boarding<'m, K: Eq + Hash, V, S> {
    Joined(watch::Receiver<Option<V>>),
    Leading(Leader<'m, K, V, S>),
}

/// The request whose read others wait for. Dropped, it lands its flight: those waiting take
/// its value, or read for themselves if it published none.
struct Leader<'m, K: Eq + Hash, V, S> {
    memory: &'m Memory<K, V, S>,
    key: K,
    publish: watch::Sender<Option<V>>,
    /// Names this flight among later ones under the same key.
    value: watch::Receiver<Option<V>>,
}

impl<K: Eq + Hash, V, S> Leader<'_, K, V, S> {
    fn publish(&self, value: V) {
        self.publish.send_replace(Some(value));
    }
}

impl<K: Eq + Hash, V, S> Drop for Leader<'_, K, V, S> {
    fn drop(&mut self) {
        let mut flights = self.memory.flights.lock().expect("no holder panics");
        // A later flight may have replaced this one: it is not this one's to land.
        if flights
            .get(&self.key)
            .is_some_and(|flight| flight.value.same_channel(&self.value))
        {
            flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use tokio::sync::Semaphore;
    use uuid::Uuid;

    use super::*;
    use crate::store::feed::announcements::Scope;
    use crate::store::feed::changes::Change;

    const P: Uuid = Uuid::from_u128(1);

    fn memory(trusted: bool) -> (Arc<Freshness>, Memory<(), u32, Slot<u32>>) {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        if trusted {
            freshness.apply(Change::Listening { position: None });
            freshness.apply(Change::Heard {
                sent: Instant::now(),
            });
        }
        let memory = Memory::new(Slot::default(), freshness.clone(), |_| Depends::Partner(P));
        (freshness, memory)
    }

    /// A read that counts itself and waits for `gate` before answering `value`.
    async fn gated_read(
        reads: &AtomicUsize,
        gate: &Semaphore,
        value: u32,
    ) -> Result<(u32, Keep), ()> {
        reads.fetch_add(1, Ordering::SeqCst);
        gate.acquire().await.unwrap().forget();
        Ok((value, Keep::Yes))
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_read_and_keep_it() {
        let (_, memory) = memory(true);
        let (reads, gate) = (AtomicUsize::new(0), Semaphore::new(0));
        let requests =
            (0..64).map(|_| memory.get_or_read(&(), async |_| gated_read(&reads, &gate, 7).await));
        let answers = futures_util::future::join_all(requests);
        let open = async {
            tokio::task::yield_now().await;
            gate.add_permits(1);
        };
        let (answers, ()) = tokio::join!(answers, open);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(
            answers
                .iter()
                .all(|answer| answer == &Ok((7, Outcome::Miss)))
        );
        assert_eq!(memory.current(&()), Some(7));
    }

    #[tokio::test]
    async fn a_request_after_a_change_does_not_join_a_read_begun_before_it() {
        let (freshness, memory) = memory(true);
        let (reads, gate) = (AtomicUsize::new(0), Semaphore::new(0));
        let first = memory.get_or_read(&(), async |_| gated_read(&reads, &gate, 1).await);
        let second = async {
            tokio::task::yield_now().await;
            freshness.apply(Change::Changed(Scope::Partners(vec![P])));
            let answer = memory.get_or_read(&(), async |_| gated_read(&reads, &gate, 2).await);
            gate.add_permits(2);
            answer.await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the second request read again"
        );
        assert_eq!(first, Ok((1, Outcome::Miss)));
        assert_eq!(second, Ok((2, Outcome::Miss)));
        assert_eq!(memory.current(&()), Some(2), "only the later read is kept");
    }

    #[tokio::test]
    async fn while_memory_is_not_trusted_nothing_is_shared_or_answered_from_memory() {
        let (_, memory) = memory(false);
        let (reads, gate) = (AtomicUsize::new(0), Semaphore::new(4));
        let requests =
            (0..4).map(|_| memory.get_or_read(&(), async |_| gated_read(&reads, &gate, 3).await));
        let answers = futures_util::future::join_all(requests).await;
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        assert!(
            answers
                .iter()
                .all(|answer| answer == &Ok((3, Outcome::Bypass)))
        );
        assert_eq!(memory.current(&()), None);
    }

    #[tokio::test]
    async fn when_the_shared_read_fails_those_waiting_read_for_themselves() {
        let (_, memory) = memory(true);
        let reads = AtomicUsize::new(0);
        let gate = Semaphore::new(0);
        let failing = memory.get_or_read(&(), async |_| {
            reads.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            Err::<(u32, Keep), ()>(())
        });
        let waiting = async {
            tokio::task::yield_now().await;
            let answer = memory.get_or_read(&(), async |_| {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>((5, Keep::Yes))
            });
            gate.add_permits(1);
            answer.await
        };
        let (failed, waited) = tokio::join!(failing, waiting);
        assert_eq!(failed, Err(()));
        assert_eq!(waited, Ok((5, Outcome::Miss)));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
