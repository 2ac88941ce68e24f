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
use crate::store::{ClusterUid, ClusterWrite, GroupRecord, SqliteStore, Store};

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
    let executors = Executors { default: ExecutorKind::Local, local: executor.clone(), kubernetes: executor.clone() };
    let config = DispatcherConfig {
        max_running: 1,
        queue_capacity: 10,
        retention: Duration::from_secs(3600),
        lease: Duration::from_secs(30),
        notify: false,
        poll: Duration::from_millis(50),
    };
    let (dispatcher, _tasks) = Dispatcher::start(
        store.clone(),
        executors,
        config,
        ExecLimits::default(),
        dir.path().join("outputs"),
        "replica".into(),
    )
    .await
    .unwrap();
    let submit = |command: &str| Submission {
        cluster_uid: uid.clone(),
        command: command.into(),
        context: Vec::new(),
        cluster_token: None,
        submitted_by: "app (oid)".into(),
        options: Default::default(),
        secrets: Vec::new(),
        hold: None,
    };
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
