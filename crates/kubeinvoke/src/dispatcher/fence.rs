//! Fencing: a replica that cannot renew its leases stops what they cover before they can run out.
//!
//! Leases are renewed every `lease/4`; another replica may call a command lost once its
//! `lease_until` (the renewing replica's clock at the renewal's start, plus `lease`) has passed.
//! So when no renewal has succeeded for `3/4 · lease` since the start of the last one that did,
//! the fence goes up: every command running here is stopped (`WorkerLost`, its process tree killed
//! or its Pod deleted) and nothing new is taken, with `lease/4` left — less the watch's period and
//! the clock skew between replicas — before anyone else may act on it. The next renewal that
//! succeeds takes the fence down. ARCHITECTURE.md states the invariant.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(super) struct Fence {
    /// When the last renewal that succeeded began.
    renewed: Mutex<Instant>,
    fenced: AtomicBool,
    /// How long without a renewal puts the fence up: `3/4 · lease`.
    after: Duration,
}

impl Fence {
    pub(super) fn new(lease: Duration, now: Instant) -> Self {
        Fence { renewed: Mutex::new(now), fenced: AtomicBool::new(false), after: lease.mul_f64(0.75) }
    }

    /// How often the fence is checked: a small part of the margin it keeps.
    pub(super) fn period(&self) -> Duration {
        (self.after / 15).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }

    /// A renewal that began at `began` succeeded (learnt at `now`); true when that took the
    /// fence down. One that hung so long that its leases ran out meanwhile (a link that healed
    /// after dropping packets) leaves the fence up: what it wrote is already in the past.
    pub(super) fn renewed(&self, began: Instant, now: Instant) -> bool {
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *renewed = (*renewed).max(began);
        now.saturating_duration_since(*renewed) < self.after && self.fenced.swap(false, Ordering::AcqRel)
    }

    /// Whether the fence is up: this replica's leases are in doubt, so it starts no work.
    pub(super) fn is_up(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// True once, when the fence must go up at `now`: the caller stops what runs here.
    pub(super) fn goes_up(&self, now: Instant) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        now.saturating_duration_since(renewed) >= self.after && !self.fenced.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_goes_up_once_a_quarter_lease_before_the_lease_runs_out_and_down_at_the_next_renewal() {
        let start = Instant::now();
        let fence = Fence::new(Duration::from_secs(20), start);
        assert!(!fence.goes_up(start + Duration::from_secs(14)));
        assert!(!fence.is_up());
        assert!(fence.goes_up(start + Duration::from_secs(15)), "at 3/4 of the lease");
        assert!(!fence.goes_up(start + Duration::from_secs(16)), "once");
        assert!(fence.is_up());
        // A renewal that began before the last success changes nothing; a success takes it down.
        assert!(fence.renewed(start + Duration::from_secs(17), start + Duration::from_secs(18)));
        assert!(!fence.is_up());
        assert!(!fence.goes_up(start + Duration::from_secs(31)));
        assert!(fence.goes_up(start + Duration::from_secs(32)));
        assert!(fence.period() <= Duration::from_millis(500));
    }

    #[test]
    fn a_renewal_that_hung_past_the_deadline_leaves_the_fence_up() {
        let start = Instant::now();
        let fence = Fence::new(Duration::from_secs(20), start);
        assert!(fence.goes_up(start + Duration::from_secs(15)));
        // Began at 2 s, answered at 19 s: its leases ran until 22 s, too close to count.
        assert!(!fence.renewed(start + Duration::from_secs(2), start + Duration::from_secs(19)));
        assert!(fence.is_up());
        assert!(fence.renewed(start + Duration::from_secs(19), start + Duration::from_secs(19)));
        assert!(!fence.is_up());
    }
}
