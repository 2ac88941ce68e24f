//! The run driver: every replica runs one. Each pass it leases the unfinished runs that are its
//! own or whose lease ran out, and for each: skips what `maxErrors` forbids, starts pending
//! targets up to `maxConcurrency`, carries out a cancel, and ends the run once nothing is pending
//! or active. Every decision is re-read from the store, so a restart resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::dispatcher::{Dispatcher, SubmitError};
use crate::fanout::{RunId, RunRecord, RunState, TargetState, skip};
use crate::store::{ClusterUid, Lease, Store, StoreResult, TargetStart};
use crate::time::now_millis;

pub struct RunDriver {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    /// Woken when a run is submitted or canceled here.
    wake: Notify,
    /// The longest wait between passes: other replicas' commands end unannounced.
    poll: Duration,
    /// How long finished runs stay readable.
    retention: Duration,
}

/// What one pass over a run did.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Something changed that the next pass should see at once.
    Moved,
    /// Waiting for commands to end (or for room in the queue).
    Waiting,
}

impl RunDriver {
    pub fn start(
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
        poll: Duration,
        retention: Duration,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let driver = Arc::new(RunDriver { store, dispatcher, wake: Notify::new(), poll, retention });
        let task = tokio::spawn(driver.clone().drive_forever());
        (driver, task)
    }

    /// A run was submitted or canceled here: look at once.
    /// Cancels a run: its pending targets never start, its active targets' commands are
    /// canceled now (the replica running each stops it), and the next pass ends the run.
    /// `None` when no such run is in `scope_key`.
    pub async fn cancel(&self, id: &RunId, scope_key: &str, by: &str) -> StoreResult<Option<RunRecord>> {
        let Some(run) = self.store.runs().cancel_run(id, scope_key, by).await? else { return Ok(None) };
        cancel_active(&self.dispatcher, &run, by).await;
        self.wake();
        Ok(Some(run))
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn drive_forever(self: Arc<Self>) {
        let mut passes: u64 = 0;
        loop {
            let ended = self.dispatcher.command_ended();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let moved = match self.pass().await {
                Ok(moved) => moved,
                Err(e) => {
                    tracing::warn!(error = %e, "driving fan-out runs failed; retrying");
                    false
                }
            };
            passes += 1;
            if passes % 600 == 0 {
                self.purge().await;
            }
            if moved {
                continue;
            }
            tokio::select! {
                _ = ended => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// One pass over every run this replica may drive; true when any of them moved.
    async fn pass(&self) -> StoreResult<bool> {
        let lease = self.dispatcher.lease_from(now_millis());
        let mut moved = false;
        for id in self.store.runs().lease_runs(&lease).await? {
            moved |= self.drive(&id, &lease).await? == Progress::Moved;
        }
        Ok(moved)
    }

    async fn drive(&self, id: &RunId, lease: &Lease) -> StoreResult<Progress> {
        let runs = self.store.runs();
        runs.settle_targets(id).await?;
        let Some(run) = runs.get_run(id, None, crate::store::TargetWindow::All).await? else {
            return Ok(Progress::Waiting);
        };
        if run.state.is_terminal() {
            return Ok(Progress::Waiting);
        }
        if let Some(by) = &run.cancel_requested_by {
            cancel_active(&self.dispatcher, &run, by).await;
        }
        let active = run.targets.iter().filter(|t| t.is_active()).count();
        let pending: Vec<i64> =
            run.targets.iter().filter(|t| t.state == TargetState::Pending).map(|t| t.position).collect();
        if active == 0 && pending.is_empty() {
            let state = run.final_state();
            if runs.finish_run(id, state, now_millis()).await? {
                let counts = summary(&run);
                tracing::info!(run_id = %id, state = state.as_str(), counts, "fan-out run finished");
            }
            return Ok(Progress::Waiting);
        }
        if run.state == RunState::PendingApproval {
            // Nothing starts before its approvers said yes; past its deadline, it never will.
            let now = now_millis();
            if run.hold.as_ref().is_some_and(|hold| hold.deadline <= now)
                && self.store.approvals().expire_run(id, now).await?
            {
                tracing::info!(run_id = %id, "fan-out run not approved in time: its targets are skipped");
                return Ok(Progress::Moved);
            }
            return Ok(Progress::Waiting);
        }
        if pending.is_empty() || run.cancel_requested_by.is_some() {
            return Ok(Progress::Waiting);
        }
        let errors = run.targets.iter().filter(|t| t.is_error()).count();
        if errors > run.error_budget() {
            let reason = format!(
                "{}: {errors} failed or exited non-zero, more than maxErrors {} allows ({})",
                skip::MAX_ERRORS_REACHED,
                run.max_errors,
                run.error_budget()
            );
            let skipped = runs.skip_pending(id, None, &reason).await?;
            tracing::info!(run_id = %id, errors, skipped, "fan-out run: maxErrors reached, the rest are skipped");
            return Ok(Progress::Moved);
        }
        let mut progress = Progress::Waiting;
        for position in pending.into_iter().take(run.concurrency().saturating_sub(active)) {
            match self.dispatcher.start_run_target(&run, position, lease).await {
                Ok(TargetStart::Started) => {}
                Ok(TargetStart::ClusterGone | TargetStart::NotAdmitted) => progress = Progress::Moved,
                Ok(TargetStart::Refused) => return Ok(Progress::Waiting),
                // The queue is full: the commands already queued will end and wake us.
                Err(SubmitError::QueueFull(_)) => break,
                Err(SubmitError::Store(e)) => return Err(e),
            }
        }
        Ok(progress)
    }

    async fn purge(&self) {
        let horizon = now_millis().saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        match self.store.runs().purge_runs(horizon).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired fan-out runs deleted"),
            Err(e) => tracing::warn!(error = %e, "purging expired fan-out runs failed"),
        }
    }
}

/// Cancels the commands of a run's started, unfinished targets (as `by`).
async fn cancel_active(dispatcher: &Dispatcher, run: &RunRecord, by: &str) {
    for target in run.targets.iter().filter(|t| t.is_active()) {
        let (Some(command), Some(cluster)) = (&target.command_id, &target.cluster_uid) else { continue };
        if let Err(e) = dispatcher.cancel_command(&ClusterUid::from_text(cluster.clone()), command, by).await {
            tracing::warn!(run_id = %run.id, command_id = %command, error = %e, "canceling a fan-out target failed");
        }
    }
}

/// `Succeeded=3 Failed=1 …` for the log.
fn summary(run: &RunRecord) -> String {
    run.counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(state, n)| format!("{}={n}", state.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}
