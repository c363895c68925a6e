//! Background work with an owner: every loop the service runs beside its requests (the change
//! feed and its heartbeat, standby and Redis probes, what keeps memory warm, metrics upkeep) is
//! spawned here, and ends when its application stops, wherever it is waiting: on a database
//! that does not answer, a Redis that is frozen, a standby that is gone.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Background {
    /// Runs `work` until it ends or the application stops.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Whether the application is stopping: no new work should start.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Ends every task, waiting up to `within` for them to finish; says how many are left.
    pub async fn stop(&self, within: Duration) -> usize {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
        self.tasks.len()
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Ends every task without waiting (for a `Drop`).
    pub fn cancel(&self) {
        self.stop.cancel();
    }
}
