//! The dispatcher with executors that misbehave: what a panic in one leaves behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, json};

use super::commands::Submission;
use super::{Dispatcher, DispatcherConfig};
use crate::command::{CommandId, CommandState, Outcome};
use crate::executor::{ExecLimits, Executor, ExecutorKind, Executors, Isolation, Job, StopSignal};
use crate::resource::ClusterRef;
use crate::resource::names::{ClusterName, GroupName, SubscriptionId};
use crate::store::{
    CancelRequest, ClaimedCommand, ClusterUid, ClusterWrite, CommandStore, GroupRecord, Lease, NewCommand, SqliteStore,
    Store, StoreError, StoreResult,
};

const SUB: &str = "00000000-0000-0000-0000-000000000000";

/// Panics on every command whose text is `panic`, as a library's `unwrap` would; runs the rest.
struct Panicky {
    ran: AtomicUsize,
}

#[async_trait]
impl Executor for Panicky {
    async fn run(&self, job: Job, _stop: StopSignal) -> Outcome {
        if job.command == "panic" {
            panic!("invalid header value");
        }
        self.ran.fetch_add(1, Ordering::SeqCst);
        Outcome::Exited { exit_code: 0, logs: "ran\n".into() }
    }

    fn isolation(&self) -> Isolation {
        Isolation::KubernetesPod
    }
}

async fn cluster(store: &dyn Store) -> ClusterUid {
    let group = GroupRecord { subscription: SUB.into(), name: "rg".into(), location: "westeurope".into(), tags: None };
    store.clusters().put_group(group).await.unwrap();
    let cluster = ClusterRef {
        subscription: SubscriptionId::parse(SUB).unwrap(),
        group: GroupName::parse("rg").unwrap(),
        name: ClusterName::parse("c1").unwrap(),
    };
    let document: Map<_, _> = json!({"location": "westeurope"}).as_object().unwrap().clone();
    store.clusters().put_cluster(ClusterWrite { cluster, document, kubeconfig: None }).await.unwrap().value.uid
}

/// A dispatcher's settings for these tests: `max_running` workers, leases of `lease`.
fn config(max_running: usize, lease: Duration) -> DispatcherConfig {
    DispatcherConfig {
        max_running,
        queue_capacity: 10,
        retention: Duration::from_secs(3600),
        lease,
        notify: false,
        poll: Duration::from_millis(50),
        reserve_space: 0,
    }
}

/// A dispatcher on `store` whose every command runs on `executor`, its outputs under `dir`.
async fn start(
    store: &Arc<dyn Store>,
    executor: Arc<dyn Executor>,
    config: DispatcherConfig,
    dir: &std::path::Path,
) -> (Arc<Dispatcher>, Vec<tokio::task::JoinHandle<()>>) {
    let executors = Executors { default: ExecutorKind::Local, local: executor.clone(), kubernetes: executor };
    Dispatcher::start(store.clone(), executors, config, ExecLimits::default(), dir.join("outputs"), "replica".into())
        .await
        .unwrap()
}

/// A plain command of `command` on the cluster `uid`.
fn submission(uid: &ClusterUid, command: &str) -> Submission {
    Submission {
        cluster_uid: uid.clone(),
        command: command.into(),
        context: Vec::new(),
        cluster_token: None,
        submitted_by: "app (oid)".into(),
        options: Default::default(),
        secrets: Vec::new(),
        hold: None,
    }
}

async fn final_state(store: &dyn Store, uid: &ClusterUid, id: &CommandId) -> crate::command::CommandRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let record = store.commands().get_command(uid, id, crate::time::now_millis()).await.unwrap().unwrap();
        if record.state.is_terminal() {
            return record;
        }
        assert!(Instant::now() < deadline, "the command never ended: {record:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panic_in_the_executor_ends_the_command_failed_and_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap());
    let uid = cluster(store.as_ref()).await;
    let executor = Arc::new(Panicky { ran: AtomicUsize::new(0) });
    let (dispatcher, _tasks) = start(&store, executor.clone(), config(1, Duration::from_secs(30)), dir.path()).await;
    let submit = |command: &str| submission(&uid, command);
    let panicked = dispatcher.submit(submit("panic")).await.unwrap();
    let after = dispatcher.submit(submit("true")).await.unwrap();
    let record = final_state(store.as_ref(), &uid, &panicked).await;
    assert_eq!(record.state, CommandState::Failed, "{record:?}");
    assert!(record.reason.as_deref().unwrap_or_default().starts_with("InternalError"), "{record:?}");
    // With one worker, the next command runs only if the panicking one gave its place back.
    assert_eq!(final_state(store.as_ref(), &uid, &after).await.state, CommandState::Succeeded);
    assert_eq!(executor.ran.load(Ordering::SeqCst), 1);
    // And shutdown is not held up by it.
    tokio::time::timeout(Duration::from_secs(5), dispatcher.shutdown(Duration::from_secs(1))).await.unwrap();
}

/// A real SQLite store whose lease renewals fail while `cut` is set: a replica that lost the
/// database. A fake of the partition only; partitions for real are the replicas suite's.
struct Partitioned {
    inner: SqliteStore,
    cut: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for Partitioned {
    fn identity(&self) -> &dyn crate::store::IdentityStore {
        self.inner.identity()
    }
    fn clusters(&self) -> &dyn crate::store::ClusterStore {
        self.inner.clusters()
    }
    fn commands(&self) -> &dyn CommandStore {
        self
    }
    fn approvals(&self) -> &dyn crate::store::ApprovalStore {
        self.inner.approvals()
    }
    fn settings(&self) -> &dyn crate::store::SettingStore {
        self.inner.settings()
    }
    fn runs(&self) -> &dyn crate::store::RunStore {
        self.inner.runs()
    }
    fn documents(&self) -> &dyn crate::store::DocumentStore {
        self.inner.documents()
    }
    fn activity(&self) -> &dyn crate::store::ActivityStore {
        self.inner.activity()
    }
    fn deliveries(&self) -> &dyn crate::store::DeliveryStore {
        self.inner.deliveries()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    fn is_shared(&self) -> bool {
        false
    }
}

#[async_trait]
impl CommandStore for Partitioned {
    async fn insert_command(&self, command: NewCommand) -> StoreResult<()> {
        self.inner.insert_command(command).await
    }
    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand> {
        self.inner.insert_running(command, lease).await
    }
    async fn get_command(
        &self,
        c: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<crate::command::CommandRecord>> {
        self.inner.get_command(c, id, now).await
    }
    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>> {
        self.inner.claim_next(lease).await
    }
    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(anyhow::anyhow!("the database is unreachable (partition)")));
        }
        self.inner.renew_leases(owner, until).await
    }
    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        self.inner.end_lost(now, expires_at).await
    }
    async fn request_cancel(&self, c: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool> {
        self.inner.request_cancel(c, id, by).await
    }
    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool> {
        self.inner.finish_command(id, outcome, now, expires_at).await
    }
    async fn report_after_lost(&self, id: &CommandId, owner: &str, exit_code: i32, logs: &str) -> StoreResult<bool> {
        self.inner.report_after_lost(id, owner, exit_code, logs).await
    }
    async fn cancel_queued(
        &self,
        c: &ClusterUid,
        id: &CommandId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<CommandState>> {
        self.inner.cancel_queued(c, id, by, now, expires_at).await
    }
    async fn list_commands(
        &self,
        c: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<crate::command::CommandSummary>> {
        self.inner.list_commands(c, before, limit, now).await
    }
    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64> {
        self.inner.interrupt_running(owner, now, expires_at).await
    }
    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>> {
        self.inner.purge_expired(now).await
    }
    async fn count_accepted(&self) -> StoreResult<usize> {
        self.inner.count_accepted().await
    }
    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>> {
        self.inner.running_command_ids().await
    }
}

/// Runs until it is stopped, noting when and why.
#[derive(Default)]
struct UntilStopped {
    stopped: std::sync::Mutex<Vec<(crate::executor::StopReason, Instant)>>,
}

#[async_trait]
impl Executor for UntilStopped {
    async fn run(&self, job: Job, mut stop: StopSignal) -> Outcome {
        if job.command == "true" {
            return Outcome::Exited { exit_code: 0, logs: String::new() };
        }
        let reason = stop.stopped().await;
        self.stopped.lock().unwrap().push((reason, Instant::now()));
        Outcome::Failed { reason: crate::command::FailureReason::WorkerLost, logs: "killed\n".into() }
    }

    fn isolation(&self) -> Isolation {
        Isolation::KubernetesPod
    }
}

#[tokio::test]
async fn a_replica_that_cannot_renew_its_lease_stops_its_commands_before_the_lease_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let partitioned = Arc::new(Partitioned {
        inner: SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap(),
        cut: std::sync::atomic::AtomicBool::new(false),
    });
    let store: Arc<dyn Store> = partitioned.clone();
    let uid = cluster(store.as_ref()).await;
    let executor = Arc::new(UntilStopped::default());
    let lease = Duration::from_secs(2);
    let (dispatcher, _tasks) = start(&store, executor.clone(), config(2, lease), dir.path()).await;
    let submit = |command: &str| submission(&uid, command);
    let running = dispatcher.submit(submit("sleep forever")).await.unwrap();
    // Let a renewal or two succeed, then cut the database off from the renewals.
    tokio::time::sleep(lease).await;
    let cut = Instant::now();
    partitioned.cut.store(true, Ordering::SeqCst);
    let record = final_state(store.as_ref(), &uid, &running).await;
    let (reason, at) = executor.stopped.lock().unwrap()[0].clone();
    assert_eq!(reason, crate::executor::StopReason::Fenced);
    // The last renewal that succeeded began at most a renewal period (lease/4) before the cut;
    // the command was stopped before that renewal's lease ran out.
    assert!(at < cut + lease - lease / 8, "stopped {:?} after the cut: too late for a {lease:?} lease", at - cut);
    assert_eq!(record.state, CommandState::Failed);
    // While fenced, nothing new starts; once renewals succeed again, work goes on.
    let waiting = dispatcher.submit(submit("true")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = store.commands().get_command(&uid, &waiting, crate::time::now_millis()).await.unwrap().unwrap().state;
    assert_eq!(state, CommandState::Accepted, "a fenced replica takes no work");
    partitioned.cut.store(false, Ordering::SeqCst);
    assert_eq!(final_state(store.as_ref(), &uid, &waiting).await.state, CommandState::Succeeded);
}

/// Stores `command` as `Running` under this tests' replica with a lease that ran out `ago` ms
/// ago: what a replica killed mid-run leaves in the store.
async fn left_running(store: &dyn Store, uid: &ClusterUid, command: &str, ago: i64) -> CommandId {
    let id = CommandId::generate();
    let now = crate::time::now_millis();
    let new = NewCommand {
        id: id.clone(),
        cluster_uid: uid.clone(),
        command: command.into(),
        context: Vec::new(),
        cluster_token: None,
        submitted_at: now - ago - 1000,
        submitted_by: "app (oid)".into(),
        options: Default::default(),
        pinned: None,
        hold: None,
    };
    let lease = Lease { owner: "replica".into(), now: now - ago - 1000, until: now - ago };
    store.commands().insert_running(new, &lease).await.unwrap();
    id
}

#[tokio::test]
async fn a_command_that_ran_to_its_end_before_its_replica_died_gets_its_real_result_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap());
    let uid = cluster(store.as_ref()).await;
    // Three commands the replica was running when it was killed: one had ended and journaled its
    // end, one had ended and its journal was cut short (a full disk), one was still running.
    let ended = left_running(store.as_ref(), &uid, "exit 3", 0).await;
    let cut_short = left_running(store.as_ref(), &uid, "true", 0).await;
    let running = left_running(store.as_ref(), &uid, "sleep 600", 0).await;
    let outputs = dir.path().join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    super::exits::ExitJournal::new(&outputs).write(&ended, 3, "it ran\nto its end\n");
    std::fs::write(outputs.join(format!("{cut_short}.exit")), "0").unwrap();

    let executor = Arc::new(Panicky { ran: AtomicUsize::new(0) });
    let (_dispatcher, _tasks) = start(&store, executor.clone(), config(1, Duration::from_secs(30)), dir.path()).await;
    let record = final_state(store.as_ref(), &uid, &ended).await;
    assert_eq!(
        (record.state, record.exit_code, record.logs.as_deref(), record.reason.as_deref()),
        (CommandState::Succeeded, Some(3), Some("it ran\nto its end\n"), None),
        "{record:?}"
    );
    for id in [&cut_short, &running] {
        let record = final_state(store.as_ref(), &uid, id).await;
        assert_eq!((record.state, record.reason.as_deref()), (CommandState::Failed, Some("Interrupted")), "{record:?}");
    }
    assert_eq!(executor.ran.load(Ordering::SeqCst), 0, "nothing is run again");
    assert_eq!(
        std::fs::read_dir(&outputs)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "exit"))
            .count(),
        0
    );
}

#[tokio::test]
async fn a_journaled_end_of_a_command_another_replica_called_lost_becomes_its_late_report() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap());
    let uid = cluster(store.as_ref()).await;
    let lost = left_running(store.as_ref(), &uid, "true", 5_000).await;
    // A survivor saw the lease run out and called the command lost.
    let now = crate::time::now_millis();
    assert_eq!(store.commands().end_lost(now, now + 3_600_000).await.unwrap(), vec![lost.clone()]);
    let outputs = dir.path().join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    super::exits::ExitJournal::new(&outputs).write(&lost, 0, "done\n");

    let executor = Arc::new(Panicky { ran: AtomicUsize::new(0) });
    let (_dispatcher, _tasks) = start(&store, executor, config(1, Duration::from_secs(30)), dir.path()).await;
    let record = store.commands().get_command(&uid, &lost, crate::time::now_millis()).await.unwrap().unwrap();
    // The row stays the survivor's `Failed`; the late report adds the exit code to its reason.
    assert_eq!((record.state, record.logs.as_deref()), (CommandState::Failed, Some("done\n")));
    let reason = record.reason.unwrap_or_default();
    assert!(reason.starts_with("WorkerLost:") && reason.contains("exit code 0"), "{reason}");
}

/// Tells the end of each command it runs (exit code 5), then hangs in its cleanup: the
/// replica is killed there.
#[derive(Default)]
struct HangsInCleanup {
    told: tokio::sync::Notify,
}

#[async_trait]
impl Executor for HangsInCleanup {
    async fn run(&self, job: Job, _stop: StopSignal) -> Outcome {
        job.exited(5, "ran to its end\n");
        self.told.notify_one();
        std::future::pending().await
    }

    fn isolation(&self) -> Isolation {
        Isolation::KubernetesPod
    }
}

#[tokio::test]
async fn a_replica_killed_while_its_command_is_cleaned_up_gets_the_command_s_real_result_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap());
    let uid = cluster(store.as_ref()).await;
    // The server makes its outputs directory before its dispatcher starts.
    std::fs::create_dir_all(dir.path().join("outputs")).unwrap();
    let executor = Arc::new(HangsInCleanup::default());
    let (dispatcher, tasks) = start(&store, executor.clone(), config(1, Duration::from_secs(30)), dir.path()).await;
    let id = dispatcher.submit(submission(&uid, "exit 5")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), executor.told.notified()).await.expect("the command ran");
    let journaled = dir.path().join("outputs").join(format!("{id}.exit"));
    assert!(journaled.exists(), "the end is journaled while the run is still being cleaned up");
    // The replica dies there: its tasks end, and the row is still `Running`.
    tasks.iter().for_each(|task| task.abort());
    drop(dispatcher);
    let state = store.commands().get_command(&uid, &id, crate::time::now_millis()).await.unwrap().unwrap().state;
    assert_eq!(state, CommandState::Running);

    let again = Arc::new(Panicky { ran: AtomicUsize::new(0) });
    let (_dispatcher, _tasks) = start(&store, again.clone(), config(1, Duration::from_secs(30)), dir.path()).await;
    let record = final_state(store.as_ref(), &uid, &id).await;
    assert_eq!(
        (record.state, record.exit_code, record.logs.as_deref(), record.reason.as_deref()),
        (CommandState::Succeeded, Some(5), Some("ran to its end\n"), None),
        "{record:?}"
    );
    assert_eq!(again.ran.load(Ordering::SeqCst), 0, "nothing is run again");
    assert!(!journaled.exists(), "the journal is removed once the result is stored");
}

#[tokio::test]
async fn a_starting_replica_waits_out_an_unavailable_store_but_not_a_refusal() {
    let calls = AtomicUsize::new(0);
    let recovered = super::until_available("recovering", || async {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(crate::store::StoreError::Unavailable(anyhow::anyhow!("deadlock detected"))),
            _ => Ok(7),
        }
    })
    .await;
    assert_eq!((recovered.ok(), calls.load(Ordering::SeqCst)), (Some(7), 3));

    let calls = AtomicUsize::new(0);
    let refused: crate::store::StoreResult<usize> = super::until_available("recovering", || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(crate::store::StoreError::Backend(anyhow::anyhow!("a broken row")))
    })
    .await;
    assert!(matches!(refused, Err(crate::store::StoreError::Backend(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a refusal is not retried");
}
