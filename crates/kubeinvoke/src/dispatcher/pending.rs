//! Commands running here whose results are not stored yet, so that a result read can wait for
//! one to end (`--result-wait`) instead of answering 202 and having its client ask again: the
//! client hears of the result as soon as it is stored, and a client that polls without pause
//! no longer takes the cores the command runs on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::command::CommandId;

/// command → a receiver that closes once the command's result is stored.
#[derive(Default)]
pub(super) struct PendingResults {
    waits: Mutex<HashMap<CommandId, watch::Receiver<()>>>,
}

/// A command's place in [`PendingResults`] while it runs here; dropped once its result is
/// stored (or dropped: a panic unwinds through it too), which wakes every reader waiting on it.
pub(super) struct Pending {
    id: CommandId,
    results: Arc<PendingResults>,
    /// Dropped after `drop` below removed the entry: a reader then finds no entry or a closed one.
    _stored: watch::Sender<()>,
}

impl PendingResults {
    /// Marks a command as running here until the returned [`Pending`] is dropped.
    pub(super) fn register(self: &Arc<Self>, id: &CommandId) -> Pending {
        let (stored, waiting) = watch::channel(());
        self.lock().insert(id.clone(), waiting);
        Pending { id: id.clone(), results: self.clone(), _stored: stored }
    }

    /// Waits until the result of a command running here is stored, for at most `limit`.
    /// True when it was stored in time; false at once when the command is not running here
    /// (queued, finished, or run by another replica).
    pub(super) async fn wait(&self, id: &CommandId, limit: Duration) -> bool {
        let Some(mut waiting) = self.lock().get(id).cloned() else {
            return false;
        };
        // Nothing is ever sent: `changed` returns (with an error) when the sender is dropped.
        tokio::time::timeout(limit, waiting.changed()).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CommandId, watch::Receiver<()>>> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.results.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> CommandId {
        CommandId::from_text(format!("{n:032x}"))
    }

    #[tokio::test]
    async fn a_reader_wakes_when_the_result_is_stored() {
        let results = Arc::new(PendingResults::default());
        let pending = results.register(&id(1));
        let reader = {
            let results = results.clone();
            tokio::spawn(async move { results.wait(&id(1), Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        drop(pending);
        assert!(reader.await.unwrap(), "stored within the limit");
        assert!(!results.wait(&id(1), Duration::from_secs(30)).await, "no longer running here: no wait");
    }

    #[tokio::test]
    async fn a_reader_waits_at_most_the_limit() {
        let results = Arc::new(PendingResults::default());
        let _pending = results.register(&id(1));
        let started = std::time::Instant::now();
        assert!(!results.wait(&id(1), Duration::from_millis(100)).await, "still running");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn commands_not_running_here_are_not_waited_for() {
        let results = Arc::new(PendingResults::default());
        let _other = results.register(&id(2));
        assert!(!results.wait(&id(1), Duration::from_secs(30)).await);
    }
}
