//! The dispatcher: admits commands into a bounded queue, claims them from the store at most
//! once, runs a bounded number at a time on the executor, and records how each ended.
//!
//! The store is the queue: a submission is durable before it is acknowledged, and a worker
//! owns a command only after the store moved it `Accepted → Running`. An in-memory counter
//! bounds the queue so a flood of submissions gets 429s instead of an ever-growing backlog.

mod approvals;
mod commands;
mod exits;
mod fence;
mod pending;
mod queue;
mod secrets;
mod submit;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

pub(crate) use approvals::Approver;
pub(crate) use commands::{Cancel, SubmitError};
use queue::Queue;
pub(crate) use submit::{
    Ask, Asker, NotAdmitted, Refused, SavedInvocation, SubmitChecks, TokenCheck, TokenRefusal, admit_target,
};

use crate::command::{CommandId, FailureReason, Outcome};
use crate::executor::{ExecLimits, ExecutorKind, Executors, Job, StopReason, StopSignal};
use crate::run_as::RunAs;
use crate::store::{ClaimedCommand, Lease, Store, StoreError, StoreResult};
use crate::time::now_millis;

#[derive(Debug, Clone, Copy)]
pub struct DispatcherConfig {
    /// Commands running at once.
    pub max_running: usize,
    /// Commands waiting to run before submissions are refused with 429.
    pub queue_capacity: usize,
    /// How long finished results stay readable.
    pub retention: Duration,
    /// How long a claim holds without renewal; a replica silent for longer has lost its commands.
    pub lease: Duration,
    /// Whether submissions at other replicas are announced (PostgreSQL `LISTEN/NOTIFY`); without
    /// it, and as a safety net with it, the store is polled every `poll` (±20%).
    pub notify: bool,
    pub poll: Duration,
    /// Free bytes the data directory keeps for the commands already accepted: below it, new
    /// submissions are refused (507) rather than accepted into a disk that cannot hold them.
    pub reserve_space: u64,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    executors: Executors,
    config: DispatcherConfig,
    limits: ExecLimits,
    /// This replica's id: the owner written on the commands it claims.
    owner: String,
    queue: Queue,
    /// One permit per command that may run here at once: taken by the claim loop, or by a
    /// submission that finds a worker idle and nothing queued.
    slots: Arc<Semaphore>,
    running: AtomicUsize,
    /// Signalled whenever a run ends (shutdown waits on it).
    run_ended: Notify,
    /// True once shutdown began: claim nothing more.
    draining: watch::Sender<bool>,
    /// One stop switch per command running here, for cancel and the end of the shutdown grace.
    runs: std::sync::Mutex<std::collections::HashMap<CommandId, watch::Sender<Option<StopReason>>>>,
    /// Where each command's full output is kept for live logs.
    outputs_dir: std::path::PathBuf,
    /// Secret parameter values of commands accepted here and not yet started.
    secrets: secrets::Secrets,
    /// Commands running here until their results are stored, for reads that wait for them.
    pending: Arc<pending::PendingResults>,
    /// Up while this replica cannot renew its leases: nothing runs or starts here.
    fence: fence::Fence,
    /// Ends of commands that ran to their end here and are not stored yet (`exits.rs`).
    exits: exits::ExitJournal,
}

impl Dispatcher {
    /// Recovers from a previous run and starts the workers and the retention janitor.
    ///
    /// Commands this replica (`owner`) left `Running` in a previous life end as its exit journal
    /// says when they had run to their end, else `Failed`/`Interrupted` (never re-run); commands
    /// left `Accepted` were never started and run now.
    pub async fn start(
        store: Arc<dyn Store>,
        executors: Executors,
        config: DispatcherConfig,
        limits: ExecLimits,
        outputs_dir: std::path::PathBuf,
        owner: String,
    ) -> StoreResult<(Arc<Self>, Vec<JoinHandle<()>>)> {
        let exits = exits::ExitJournal::new(&outputs_dir);
        let pending = until_available("recovering the commands of this replica's previous life", || {
            recover(store.as_ref(), &exits, &owner, config.retention)
        })
        .await?;
        if pending > 0 {
            tracing::info!(pending, "resuming commands accepted before the restart");
        }
        metrics::gauge!("kubeinvoke_commands_running").set(0.0);
        let dispatcher = Arc::new(Dispatcher {
            store,
            executors,
            config,
            limits,
            owner,
            queue: Queue::new(pending, config.queue_capacity),
            slots: Arc::new(Semaphore::new(config.max_running.max(1))),
            running: AtomicUsize::new(0),
            run_ended: Notify::new(),
            draining: watch::channel(false).0,
            runs: std::sync::Mutex::new(std::collections::HashMap::new()),
            outputs_dir,
            secrets: secrets::Secrets::default(),
            pending: Arc::default(),
            fence: fence::Fence::new(config.lease, Instant::now()),
            exits,
        });
        if config.notify {
            dispatcher.store.notify_new_work(dispatcher.queue.wake.clone());
        }
        let tasks = vec![
            tokio::spawn(dispatcher.clone().claim_loop()),
            tokio::spawn(dispatcher.clone().janitor()),
            tokio::spawn(dispatcher.clone().lease_keeper()),
            tokio::spawn(dispatcher.clone().fence_watch()),
        ];
        Ok((dispatcher, tasks))
    }

    /// Graceful stop: claim nothing more, let running commands finish within `grace`, then stop
    /// the rest (they end `Failed`/`ServerShutdown`) and wait until their results are stored.
    /// Commands still `Accepted` stay queued for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.draining.send_replace(true);
        self.queue.wake.notify_waiters();
        let running = self.running.load(Ordering::Acquire);
        if running > 0 {
            tracing::info!(running, grace = %humantime::format_duration(grace), "waiting for running commands to finish");
        }
        if tokio::time::timeout(grace, self.all_executions_ended()).await.is_err() {
            tracing::warn!(
                running = self.running.load(Ordering::Acquire),
                "grace period over: stopping the remaining commands"
            );
            for stop in self.runs.lock().unwrap_or_else(|p| p.into_inner()).values() {
                stop.send_replace(Some(StopReason::Shutdown));
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), self.all_executions_ended()).await;
        }
    }

    /// A lease from `now` for this replica, as its claims take.
    pub fn lease_from(&self, now: i64) -> Lease {
        Lease { owner: self.owner.clone(), now, until: expiry(now, self.config.lease) }
    }

    /// Waits until the result of a command running here is stored, for at most `limit`: true
    /// when it was; false at once when the command is not running here.
    pub async fn wait_for_result(&self, id: &CommandId, limit: Duration) -> bool {
        !limit.is_zero() && self.pending.wait(id, limit).await
    }

    /// Resolves when a command running here next ends.
    pub fn command_ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.run_ended.notified()
    }

    fn expiry_from(&self, now: i64) -> i64 {
        expiry(now, self.config.retention)
    }

    /// Asks a command running here to stop as canceled by `by`; false when it is not running here.
    fn stop_execution(&self, id: &CommandId, by: &str) -> bool {
        match self.runs.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            Some(stop) => {
                stop.send_replace(Some(StopReason::Cancel(by.to_string())));
                true
            }
            None => false,
        }
    }

    async fn all_executions_ended(&self) {
        loop {
            let ended = self.run_ended.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut draining = self.draining.subscribe();
        loop {
            let permit = tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
                _ = draining.wait_for(|d| *d) => return,
            };
            if *draining.borrow() {
                return;
            }
            if self.fence.is_up() {
                // No new work while this replica's leases are in doubt.
                drop(permit);
                tokio::time::sleep(self.fence.period()).await;
                continue;
            }
            let now = now_millis();
            let lease = self.lease_from(now);
            let claim = self.store.commands().claim_next(&lease).await;
            if claim.is_ok() && self.store.is_shared() {
                // Other replicas submit and claim too: the database has the true queue length.
                if let Ok(queued) = self.store.commands().count_accepted().await {
                    self.queue.set(queued);
                }
            }
            match claim {
                Ok(Some(claimed)) => {
                    if !self.store.is_shared() {
                        self.queue.left();
                    }
                    self.start_execution(claimed, permit);
                }
                Ok(None) => {
                    drop(permit);
                    // A missed wake-up costs at most one poll; `notify_one` also stores a permit.
                    // The jitter keeps replicas from polling in step.
                    let poll = self.config.poll.mul_f64(0.8 + 0.4 * rand::random::<f64>());
                    tokio::select! {
                        _ = tokio::time::timeout(poll, self.queue.wake.notified()) => {}
                        _ = draining.wait_for(|d| *d) => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "claiming the next command failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// A worker for a command this replica now owns (`Running` in the store) under `permit`.
    fn start_execution(self: &Arc<Self>, claimed: ClaimedCommand, permit: OwnedSemaphorePermit) {
        let running = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("kubeinvoke_commands_running").set(running as f64);
        let this = self.clone();
        let pending = self.pending.register(&claimed.id);
        tokio::spawn(async move {
            this.execute(claimed).await;
            drop(pending);
            drop(permit);
            let running = this.running.fetch_sub(1, Ordering::AcqRel) - 1;
            metrics::gauge!("kubeinvoke_commands_running").set(running as f64);
            this.run_ended.notify_waiters();
        });
    }

    /// A worker's permit for a submission to start at once: only while nothing waits in the
    /// queue (a newcomer never overtakes a queued command) and the server is not shutting down.
    fn idle_worker(&self) -> Option<OwnedSemaphorePermit> {
        if *self.draining.borrow() || !self.queue.is_empty() || self.fence.is_up() {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    async fn execute(&self, claimed: ClaimedCommand) {
        let id = claimed.id.clone();
        let principal = claimed.submitted_by.clone();
        let run_as = claimed.options.run_as.clone();
        tracing::info!(command_id = %id, principal = %principal, run_as = run_as.as_ref().map(RunAs::describe), "command started");
        let prepared = match self.prepare_job(claimed) {
            Ok((job, executor)) => Self::as_run_as_user(job, run_as.as_ref()).await.map(|job| (job, executor)),
            Err(reason) => Err(reason),
        };
        let (job, executor) = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => {
                let note = format!("[kubeinvoke] the command was not run: {}\n", reason.as_reason());
                self.record(&id, &principal, &Outcome::Failed { reason, logs: note }, Duration::ZERO).await;
                return;
            }
        };
        let (stop, stop_requests) = watch::channel(None);
        {
            // Checked under the lock the fence stops runs under, so a command claimed just before
            // the fence went up is either stopped by it or never started.
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            if self.fence.is_up() {
                drop(runs);
                let note = "[kubeinvoke] the command was not started: this replica lost the database\n".to_string();
                let outcome = Outcome::Failed { reason: FailureReason::WorkerLost, logs: note };
                self.record(&id, &principal, &outcome, Duration::ZERO).await;
                return;
            }
            runs.insert(id.clone(), stop);
        }
        let started = Instant::now();
        // No command outlives its task: a panic in the executor (ours or a library's) ends the
        // command `Failed` like any other end, and its worker and queue places are released.
        let run = std::panic::AssertUnwindSafe(executor.run(job, StopSignal::new(stop_requests)));
        let outcome = match futures_util::FutureExt::catch_unwind(run).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
                tracing::error!(command_id = %id, panic = what.unwrap_or("(no message)"), "the executor panicked while running a command; it ends Failed");
                let note = "[kubeinvoke] the server failed while running the command\n".to_string();
                Outcome::Failed { reason: FailureReason::Internal, logs: note }
            }
        };
        let ran = started.elapsed();
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        metrics::histogram!("kubeinvoke_command_duration_seconds").record(ran.as_secs_f64());
        metrics::counter!("kubeinvoke_commands_total", "state" => outcome.state().as_str()).increment(1);
        self.record(&id, &principal, &outcome, ran).await;
    }

    /// A job whose saved command runs as a user (`runAs.user`): its kubeconfig becomes one with a
    /// short-lived certificate of that user only, signed by the cluster; the registered one stays
    /// for the server's own calls.
    async fn as_run_as_user(mut job: Job, run_as: Option<&RunAs>) -> Result<Job, FailureReason> {
        let Some(RunAs::User { user, groups }) = run_as else { return Ok(job) };
        let Some(registered) = job.kubeconfig.take() else {
            return Err(FailureReason::StartFailed(
                "the saved command runs as a user (runAs), and the cluster has no properties.kubeconfig to ask for its credential with".into(),
            ));
        };
        let lifetime = job.limits.timeout + Duration::from_secs(60);
        let scoped = crate::executor::kubernetes::run_as::user_kubeconfig(&registered, &job.id, user, groups, lifetime)
            .await
            .map_err(|why| FailureReason::StartFailed(format!("no credential for runAs user {user}: {why}")))?;
        job.kubeconfig = Some(scoped);
        job.cluster_kubeconfig = Some(registered);
        job.as_caller = true;
        Ok(job)
    }

    /// The job and executor for a claimed command. The cluster's settings were checked when it was
    /// registered, but a stored value that cannot be used now (written by an older version, or
    /// edited in the database) fails the command naming the setting; it is never ignored.
    fn prepare_job(&self, claimed: ClaimedCommand) -> Result<(Job, Arc<dyn crate::executor::Executor>), FailureReason> {
        let secrets = self.secrets.take(&claimed.id).unwrap_or_default();
        let settings = claimed.settings.map_err(|e| FailureReason::InvalidClusterSetting(e.message))?;
        let mut environment = claimed.options.environment;
        let mut masked = Vec::new();
        if !claimed.options.secret_names.is_empty() {
            let known = |name: &String| secrets.iter().any(|(k, _)| k == name);
            if !claimed.options.secret_names.iter().all(known) {
                return Err(FailureReason::SecretsLost);
            }
            masked = secrets.iter().map(|(_, value)| value.clone()).collect();
            environment.extend(secrets);
        }
        let mut limits = self.limits.tightened_by(&settings.limits);
        if let Some(timeout) = claimed.options.timeout {
            limits.timeout = limits.timeout.min(timeout);
        }
        // A cluster token (AAD clusters) replaces the admin credentials: the command acts as the
        // caller. Only an AAD cluster ever gets it (decided now, from the cluster as it is): a
        // fan-out's token never reaches a target that is not AAD-managed.
        let cluster_token = claimed.cluster_token.filter(|_| settings.aad_managed);
        let as_caller = cluster_token.is_some() && claimed.kubeconfig.is_some();
        let cluster_kubeconfig = cluster_token.as_ref().and_then(|_| claimed.kubeconfig.clone());
        let kubeconfig = match (claimed.kubeconfig, &cluster_token) {
            (Some(config), Some(token)) => Some(crate::kubeconfig::with_bearer_token(&config, token).map_err(|e| {
                FailureReason::InvalidClusterSetting(format!(
                    "properties.kubeconfig: the caller's token cannot be set in it: {e}"
                ))
            })?),
            (config, _) => config,
        };
        let output = Some(self.output_path(&claimed.id));
        let on_exit = Some(self.exits.notice(&claimed.id));
        let service_account = match &claimed.options.run_as {
            Some(RunAs::ServiceAccount { service_account }) => {
                if settings.executor.unwrap_or(self.executors.default) != ExecutorKind::Kubernetes {
                    return Err(FailureReason::InvalidClusterSetting(
                        "the saved command runs as a service account (runAs.serviceAccount), which needs the Pod \
                         executor: set the cluster's properties.commandExecutor to kubernetes"
                            .into(),
                    ));
                }
                Some(service_account.clone())
            }
            _ => None,
        };
        let job = Job {
            id: claimed.id,
            command: claimed.command,
            context: claimed.context,
            kubeconfig,
            cluster_kubeconfig,
            as_caller,
            limits,
            environment,
            masked,
            output,
            service_account,
            on_exit,
        };
        Ok((job, self.executors.for_kind(settings.executor).clone()))
    }

    /// Stores the outcome, retrying while the store is unavailable: a finished run is never dropped,
    /// and one that ran to its end was journaled by its executor the moment it ended
    /// (`Job::on_exit`), so not even this replica's death drops it.
    /// The log line says how long the run (`ran`) and storing it took, in microseconds.
    async fn record(&self, id: &CommandId, principal: &str, outcome: &Outcome, ran: Duration) {
        let recording = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let (exit_code, reason) = match outcome {
            Outcome::Exited { exit_code, .. } => (Some(*exit_code), None),
            Outcome::Failed { reason, .. } => (None, Some(reason.as_reason())),
        };
        loop {
            let now = now_millis();
            match self.store.commands().finish_command(id, outcome, now, expiry(now, self.config.retention)).await {
                Ok(true) => {
                    self.exits.remove(id);
                    let (run_us, store_us) = (ran.as_micros() as u64, recording.elapsed().as_micros() as u64);
                    tracing::info!(command_id = %id, principal, state = outcome.state().as_str(), exit_code, reason, run_us, store_us, "command finished");
                    return;
                }
                Ok(false) => {
                    self.report_after_lost(id, principal, outcome).await;
                    self.exits.remove(id);
                    return;
                }
                Err(e) => {
                    let state = outcome.state().as_str();
                    tracing::error!(command_id = %id, state, exit_code, reason, error = %e, "recording a result failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// A result that met a row no longer running here. When another replica called it lost while
    /// this one, cut off from the database, saw it run to its end, the row learns what really
    /// happened (its state stays `Failed`); anything else ended it for good (a cancel, its
    /// cluster's deletion) and the result is dropped.
    async fn report_after_lost(&self, id: &CommandId, principal: &str, outcome: &Outcome) {
        if let Outcome::Exited { exit_code, logs } = outcome {
            match self.store.commands().report_after_lost(id, &self.owner, *exit_code, logs).await {
                Ok(true) => {
                    tracing::warn!(command_id = %id, principal, exit_code, "the command had been called lost while it ran here to its end: its result says so now");
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(command_id = %id, error = %e, "reporting the end of a command called lost failed")
                }
            }
        }
        tracing::warn!(
            command_id = %id,
            principal,
            "result dropped: the command was no longer running here (its cluster was deleted, or its lease ran out and it ended WorkerLost)"
        );
    }

    /// Renews the leases of the commands running here (carrying out cancels asked of them at
    /// other replicas) and ends `WorkerLost` the commands of replicas that stopped renewing.
    async fn lease_keeper(self: Arc<Self>) {
        let period = (self.config.lease / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            let began = Instant::now();
            let now = now_millis();
            match self.store.commands().renew_leases(&self.owner, expiry(now, self.config.lease)).await {
                Ok(requests) => {
                    if self.fence.renewed(began, Instant::now()) {
                        tracing::warn!("leases renewed again: this replica takes work again");
                        self.queue.wake.notify_one();
                    }
                    for request in requests {
                        if self.stop_execution(&request.id, &request.by) {
                            tracing::info!(command_id = %request.id, by = %request.by, "cancel asked at another replica");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing command leases failed"),
            }
            match self.store.commands().end_lost(now, expiry(now, self.config.retention)).await {
                Ok(lost) => {
                    for id in &lost {
                        tracing::warn!(command_id = %id, "command ended Failed/WorkerLost: its replica stopped renewing the lease");
                    }
                    metrics::counter!("kubeinvoke_commands_total", "state" => "Failed").increment(lost.len() as u64);
                }
                Err(e) => tracing::warn!(error = %e, "looking for lost commands failed"),
            }
            self.expire_approvals().await;
        }
    }

    /// Puts the fence up when leases went unrenewed too long: every command running here is
    /// stopped (`WorkerLost`) before another replica may call it lost (`fence.rs`).
    async fn fence_watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.fence.period()).await;
            if !self.fence.goes_up(Instant::now()) {
                continue;
            }
            let stopped = {
                let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
                for stop in runs.values() {
                    stop.send_replace(Some(StopReason::Fenced));
                }
                runs.len()
            };
            metrics::counter!("kubeinvoke_fences_total").increment(1);
            tracing::error!(
                stopped,
                "leases could not be renewed in time (the database is unreachable): the commands running here are stopped and no work is taken until a renewal succeeds"
            );
        }
    }

    async fn janitor(self: Arc<Self>) {
        let period = (self.config.retention / 2).clamp(Duration::from_millis(200), Duration::from_secs(60));
        loop {
            tokio::time::sleep(period).await;
            match self.store.commands().purge_expired(now_millis()).await {
                Ok(purged) if purged.is_empty() => {}
                Ok(purged) => {
                    for id in &purged {
                        let _ = tokio::fs::remove_file(self.output_path(id)).await;
                    }
                    tracing::info!(purged = purged.len(), "expired results deleted");
                }
                Err(e) => tracing::warn!(error = %e, "purging expired results failed"),
            }
            self.sweep().await;
        }
    }

    /// Removes what executors left behind for commands that no longer run (Pods whose deletion
    /// failed, or of a replica that died). Leftovers are listed before the running commands
    /// are read: a command claimed in between is then among the running.
    async fn sweep(&self) {
        for executor in self.executors.all() {
            let leftovers = executor.leftovers().await;
            if leftovers.is_empty() {
                continue;
            }
            let Ok(running) = self.store.commands().running_command_ids().await else { continue };
            for leftover in leftovers.iter().filter(|l| !running.contains(&l.command_id)) {
                executor.remove_leftover(leftover).await;
            }
        }
    }
}

fn expiry(now: i64, retention: Duration) -> i64 {
    now.saturating_add(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

/// What a replica does with its previous life before it takes work: the journaled ends stored,
/// the commands it was running when it died ended `Interrupted`; answers how many wait in the queue.
async fn recover(
    store: &dyn Store,
    exits: &exits::ExitJournal,
    owner: &str,
    retention: Duration,
) -> StoreResult<usize> {
    let journaled = store_journaled_ends(store, exits, owner, retention).await?;
    if journaled > 0 {
        tracing::warn!(
            journaled,
            "commands that had run to their end before the server stopped got their results from its exit journal"
        );
    }
    let now = now_millis();
    let interrupted = store.commands().interrupt_running(owner, now, expiry(now, retention)).await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "commands that were running when the server stopped ended Failed/Interrupted");
    }
    store.commands().count_accepted().await
}

/// Runs `step` again while the store is unavailable (restarting, unreachable, or it rolled the
/// step back to break a deadlock with another replica), for up to [`START_PATIENCE`]: a replica
/// that starts in such a moment waits for the database instead of exiting.
async fn until_available<T, F, Fut>(what: &str, mut step: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match step().await {
            Err(StoreError::Unavailable(e)) if started.elapsed() < START_PATIENCE => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "{what}: the store is unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// How long a starting replica waits for an unavailable store before it gives up.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Stores the ends this replica journaled in a previous life but did not get to store (`exits.rs`):
/// as the result of a command still `Running` here, or as the late report of one called lost since.
/// Returns how many were stored; an end whose command was ended otherwise (canceled, its cluster
/// deleted) is dropped.
async fn store_journaled_ends(
    store: &dyn Store,
    journal: &exits::ExitJournal,
    owner: &str,
    retention: Duration,
) -> StoreResult<usize> {
    let mut stored = 0;
    for exits::Exit { id, exit_code, logs } in journal.unstored() {
        let now = now_millis();
        let outcome = Outcome::Exited { exit_code, logs: logs.clone() };
        let commands = store.commands();
        let done = commands.finish_command(&id, &outcome, now, expiry(now, retention)).await?
            || commands.report_after_lost(&id, owner, exit_code, &logs).await?;
        if done {
            tracing::warn!(command_id = %id, exit_code, "the command had run to its end before the server stopped: its result is stored from the exit journal");
            stored += 1;
        }
        journal.remove(&id);
    }
    Ok(stored)
}

#[cfg(test)]
mod tests;
