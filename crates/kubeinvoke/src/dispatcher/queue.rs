//! Queue admission: how many commands wait to run, against the capacity beyond which
//! submissions get 429. Every change of the count (and of its gauge) happens here.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The queue is full; retry later.
#[derive(Debug)]
pub struct QueueFull {
    pub queued: usize,
}

pub(super) struct Queue {
    queued: AtomicUsize,
    capacity: usize,
    /// Woken when a command is stored, so an idle worker claims it at once.
    pub(super) wake: std::sync::Arc<Notify>,
}

/// A reserved place in the queue. Dropped without [`Slot::commit`] it is given back.
pub(super) struct Slot<'a> {
    queue: &'a Queue,
    committed: bool,
}

impl Queue {
    pub(super) fn new(pending: usize, capacity: usize) -> Self {
        let queue = Queue { queued: AtomicUsize::new(0), capacity, wake: std::sync::Arc::new(Notify::new()) };
        queue.set(pending);
        queue
    }

    /// Reserves a place, or says the queue is full.
    pub(super) fn reserve(&self) -> Result<Slot<'_>, QueueFull> {
        let capacity = self.capacity;
        let before = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
            .map_err(|queued| QueueFull { queued })?;
        publish(before + 1);
        Ok(Slot { queue: self, committed: false })
    }

    /// Whether no command waits (as far as this replica knows).
    pub(super) fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// A command joined the queue without a reservation: one that waited for approval, released
    /// by its last approver (its submission was admitted when it was held). Wakes a worker.
    pub(super) fn joined(&self) {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        publish(before + 1);
        self.wake.notify_one();
    }

    /// A queued command left the queue: claimed here, or canceled before any worker took it.
    pub(super) fn left(&self) {
        let before = self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        publish(before.unwrap_or(1).saturating_sub(1));
    }

    /// The true length, as counted in a store other replicas share.
    pub(super) fn set(&self, queued: usize) {
        self.queued.store(queued, Ordering::Release);
        publish(queued);
    }
}

impl Slot<'_> {
    /// The command is stored: wake a worker for it.
    pub(super) fn commit(mut self) {
        self.committed = true;
        self.queue.wake.notify_one();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.queue.left();
        }
    }
}

fn publish(queued: usize) {
    metrics::gauge!("kubeinvoke_queue_depth").set(queued as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_not_committed_is_given_back_and_a_full_queue_refuses() {
        let queue = Queue::new(1, 2);
        let slot = queue.reserve().expect("room for one more");
        assert_eq!(queue.reserve().err().map(|f| f.queued), Some(2));
        drop(slot);
        queue.reserve().expect("the dropped slot was given back").commit();
        assert!(queue.reserve().is_err());
        queue.left();
        assert!(queue.reserve().is_ok());
    }
}
