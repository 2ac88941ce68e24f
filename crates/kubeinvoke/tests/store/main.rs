//! One contract for every [`Store`] backend, written once and run on SQLite and on PostgreSQL:
//! each test below exists twice (`sqlite::…`, `postgres::…`) and pins what a method does, so the
//! two backends cannot drift apart. PostgreSQL comes from `KUBEINVOKE_TEST_POSTGRES_URL`
//! (`scripts/test.sh` sets it); each test gets a fresh database there.

use kubeinvoke_testkit::harness;
use kubeinvoke_testkit::prerequisites;

use std::sync::Arc;

use serde_json::{Map, Value, json};

use kubeinvoke::approval::{Decision, Hold, Verdict};
use kubeinvoke::command::{CommandId, CommandState, FailureReason, Outcome};
use kubeinvoke::fanout::{Limit, NewRun, NewTarget, RunId, RunScope, RunState, TargetState};
use kubeinvoke::resource::ClusterRef;
use kubeinvoke::resource::names::{ClusterName, GroupName, SubscriptionId};
use kubeinvoke::run_as::RunAs;
use kubeinvoke::store::{
    ClusterUid, ClusterWrite, CommandEvents, CommandLogRow, CommandOptions, Decided, DocumentKind, DocumentRecord,
    GroupRecord, Lease, NewCommand, PostgresStore, PrincipalRecord, RoleAssignmentRecord, SqliteStore, Store,
    TargetStart, TargetWindow,
};

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const HOUR: i64 = 3_600_000;

/// A store of one backend, with whatever keeps it alive and a way around it for the few tests
/// that must set up rows no API call writes (rows of older versions).
struct Subject {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(harness::TestDatabase),
}

impl Subject {
    /// Runs one SQL statement on the database directly.
    async fn raw(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("kubeinvoke.db")).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Backend::Postgres(database) => {
                harness::postgres_client(&database.url()).await.batch_execute(sql).await.unwrap()
            }
        }
    }

    /// The store opened again on the same database, running any migration it has not run.
    async fn reopen(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("kubeinvoke.db")).unwrap()),
            Backend::Postgres(database) => Arc::new(PostgresStore::connect(&database.url()).await.unwrap()),
        }
    }

    /// Forgets the last migration (the tag index), as a database of the version before it.
    async fn before_the_tag_index(&self) {
        match &self.backend {
            Backend::Sqlite(_) => {
                let version = self.count("PRAGMA user_version").await;
                self.raw(&format!("DROP TABLE cluster_tags; PRAGMA user_version = {};", version - 1)).await;
            }
            Backend::Postgres(_) => {
                self.raw(
                    "DROP TABLE cluster_tags;
                     DELETE FROM kubeinvoke_schema WHERE version = (SELECT MAX(version) FROM kubeinvoke_schema);",
                )
                .await;
            }
        }
    }

    /// The one number a `SELECT COUNT(*) …` returns, read on the database directly.
    async fn count(&self, sql: &str) -> i64 {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("kubeinvoke.db")).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres(database) => {
                harness::postgres_client(&database.url()).await.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }
}

async fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kubeinvoke.db")).expect("open SQLite");
    Subject { store: Arc::new(store), backend: Backend::Sqlite(dir) }
}

/// The PostgreSQL subject, when `KUBEINVOKE_TEST_POSTGRES_URL` names a server (else its half of
/// the contract is left out, saying so).
async fn postgres() -> Option<Subject> {
    let base = std::env::var("KUBEINVOKE_TEST_POSTGRES_URL").ok().filter(|v| !v.is_empty());
    let missing = base.is_none().then(|| "KUBEINVOKE_TEST_POSTGRES_URL names no PostgreSQL server".to_string());
    if !prerequisites::runs("the store contract on PostgreSQL", missing) {
        return None;
    }
    let database = harness::TestDatabase::create(&base?).await;
    let store = PostgresStore::connect(&database.url()).await.expect("connect PostgreSQL");
    Some(Subject { store: Arc::new(store), backend: Backend::Postgres(database) })
}

/// Declares each contract test once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(&super::sqlite().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                if let Some(subject) = super::postgres().await {
                    super::$name(&subject).await;
                }
            })*
        }
    };
}

contract!(
    principals_are_listed_in_creation_order_and_deleted_with_their_assignments,
    role_assignments_keep_the_first_write_and_list_in_creation_order,
    groups_and_clusters_round_trip_and_a_cluster_needs_its_group,
    clusters_list_by_group_then_name_with_a_cursor,
    clusters_are_selected_by_every_tag_with_names_ignoring_ascii_case,
    hostile_tags_are_plain_data_to_the_selection,
    clusters_stored_before_the_tag_index_are_found_by_their_tags,
    a_cluster_put_without_kubeconfig_keeps_the_stored_one,
    claims_take_the_oldest_accepted_command_once_with_its_cluster_settings,
    a_command_stored_running_is_handed_over_with_its_cluster_and_never_claimed,
    finishing_is_guarded_on_running,
    cancel_of_a_queued_command_is_guarded_on_accepted,
    a_cancel_asked_elsewhere_reaches_the_owner_at_renewal,
    lost_leases_end_worker_lost_and_are_never_reclaimed,
    interrupt_ends_the_owners_and_unowned_running_commands_only,
    history_is_newest_first_with_paging_and_hides_expired,
    purge_deletes_only_expired_results,
    deleting_a_cluster_deletes_its_commands,
    settings_keep_the_first_value,
    a_stored_setting_that_cannot_be_used_reaches_the_claim_as_an_error,
    command_options_round_trip_and_secret_values_have_no_column,
    a_pinned_command_is_claimed_only_by_its_replica_and_never_outlives_it,
    documents_keep_their_first_spelling_and_list_by_scope,
    a_run_target_starts_once_under_the_lease_and_a_cancel_stops_the_rest,
    settled_targets_keep_their_commands_end_and_unfinished_ones_stay_live,
    a_running_command_canceled_ends_canceled_naming_who_and_keeps_its_output,
    a_finished_command_is_left_alone_by_every_transition,
    one_pending_target_is_skipped_and_clusters_are_found_by_uid,
    held_commands_wait_unclaimed_until_enough_distinct_approvers_release_them,
    a_rejection_cancels_and_silence_expires_a_held_command,
    approvals_are_deleted_with_their_command,
    a_held_run_starts_no_target_until_approved_as_a_whole,
);

fn cluster_ref(group: &str, name: &str) -> ClusterRef {
    ClusterRef {
        subscription: SubscriptionId::parse(SUB).unwrap(),
        group: GroupName::parse(group).unwrap(),
        name: ClusterName::parse(name).unwrap(),
    }
}

async fn group(store: &dyn Store, name: &str) {
    let record = GroupRecord { subscription: SUB.into(), name: name.into(), location: "westeurope".into(), tags: None };
    store.clusters().put_group(record).await.unwrap();
}

fn id(text: &str) -> CommandId {
    CommandId::from_text(text)
}

/// Creates the group if needed and a cluster with `properties`; returns its uid.
async fn cluster(store: &dyn Store, group_name: &str, name: &str, properties: Value) -> ClusterUid {
    group(store, group_name).await;
    let document: Map<String, Value> =
        json!({"location": "westeurope", "properties": properties}).as_object().unwrap().clone();
    let write = ClusterWrite { cluster: cluster_ref(group_name, name), document, kubeconfig: Some(b"kc".to_vec()) };
    store.clusters().put_cluster(write).await.unwrap().value.uid
}

async fn submit(store: &dyn Store, cluster_uid: &ClusterUid, name: &str, at: i64) {
    let command = NewCommand {
        id: id(name),
        cluster_uid: cluster_uid.clone(),
        command: format!("echo {name}"),
        context: b"zip".to_vec(),
        cluster_token: Some("token".into()),
        submitted_at: at,
        submitted_by: "app (object)".into(),
        options: Default::default(),
        pinned: None,
        hold: None,
    };
    store.commands().insert_command(command).await.unwrap();
}

/// Submits a command held for `needed` approvals until `deadline`, asked by `requester`.
async fn submit_held(store: &dyn Store, cluster_uid: &ClusterUid, name: &str, needed: u8, deadline: i64) {
    let command = NewCommand {
        id: id(name),
        cluster_uid: cluster_uid.clone(),
        command: format!("echo {name}"),
        context: harness::zip_of(&[("a.txt", b"abc")]),
        cluster_token: None,
        submitted_at: 1,
        submitted_by: "app (requester)".into(),
        options: Default::default(),
        pinned: None,
        hold: Some(Hold { needed, deadline, requester: "requester".into() }),
    };
    store.commands().insert_command(command).await.unwrap();
}

fn decision(verdict: Verdict, approver: &str, at: i64) -> Decision {
    Decision {
        verdict,
        approver_oid: approver.into(),
        approver: format!("app ({approver})"),
        reason: format!("{approver} says so"),
        at,
    }
}

async fn held_commands_wait_unclaimed_until_enough_distinct_approvers_release_them(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit_held(store, &uid, "held", 2, 1_000).await;
    assert_eq!(state_of(store, &uid, "held").await, CommandState::PendingApproval);
    assert!(store.commands().claim_next(&lease("r", 2)).await.unwrap().is_none(), "a held command is never claimed");
    assert_eq!(store.commands().count_accepted().await.unwrap(), 0, "and takes no queue place");
    let approvals = store.approvals();
    let pending = approvals.pending_approvals(2, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].group.as_str(), pending[0].cluster.as_str(), pending[0].hold.needed), ("rg", "c1", 2));
    assert_eq!(pending[0].context_bytes, Some(harness::zip_of(&[("a.txt", b"abc")]).len() as i64));
    let uid_ref = &uid;
    let decide = |d: Decision| async move { approvals.decide(uid_ref, &id("held"), &d, 99_999).await.unwrap() };
    assert_eq!(decide(decision(Verdict::Approve, "requester", 3)).await, Decided::OwnCommand);
    assert_eq!(decide(decision(Verdict::Approve, "first", 4)).await, Decided::Counted { approvals: 1, needed: 2 });
    assert_eq!(decide(decision(Verdict::Approve, "first", 5)).await, Decided::AlreadyApproved);
    assert_eq!(state_of(store, &uid, "held").await, CommandState::PendingApproval);
    assert_eq!(decide(decision(Verdict::Approve, "second", 6)).await, Decided::Released);
    assert_eq!(state_of(store, &uid, "held").await, CommandState::Accepted);
    assert_eq!(decide(decision(Verdict::Approve, "third", 7)).await, Decided::NotPending("Accepted"));
    let held = approvals.held_command(&uid, &id("held"), 8).await.unwrap().expect("still readable as held");
    let who: Vec<&str> = held.decisions.iter().map(|d| d.approver_oid.as_str()).collect();
    assert_eq!(who, ["first", "second"]);
    assert_eq!(held.decisions[0].reason, "first says so");
    assert!(approvals.pending_approvals(8, 10).await.unwrap().is_empty());
    let claimed = store.commands().claim_next(&lease("r", 9)).await.unwrap().expect("released into the queue");
    assert_eq!(claimed.context, harness::zip_of(&[("a.txt", b"abc")]));
    // A command that was never held has no approval and takes no decision.
    submit(store, &uid, "free", 10).await;
    assert!(approvals.held_command(&uid, &id("free"), 11).await.unwrap().is_none());
    let other = cluster(store, "rg", "c2", json!({})).await;
    assert_eq!(
        approvals.decide(&other, &id("held"), &decision(Verdict::Approve, "x", 12), 99_999).await.unwrap(),
        Decided::NotFound,
        "commands are found through their own cluster only"
    );
}

async fn a_rejection_cancels_and_silence_expires_a_held_command(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit_held(store, &uid, "rejected", 2, 1_000).await;
    submit_held(store, &uid, "silent", 1, 50).await;
    submit_held(store, &uid, "late", 1, 60).await;
    let approvals = store.approvals();
    let first = decision(Verdict::Approve, "first", 5);
    approvals.decide(&uid, &id("rejected"), &first, 99_999).await.unwrap();
    let no = decision(Verdict::Reject, "first", 6);
    assert_eq!(approvals.decide(&uid, &id("rejected"), &no, 99_999).await.unwrap(), Decided::Rejected);
    let record = store.commands().get_command(&uid, &id("rejected"), 7).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Canceled);
    assert_eq!(record.reason.as_deref(), Some("Rejected by app (first): first says so"));
    let held = approvals.held_command(&uid, &id("rejected"), 7).await.unwrap().unwrap();
    assert_eq!(held.decisions.len(), 1, "the approver's rejection replaced its approval");
    assert_eq!(held.context_bytes, None, "a decided command keeps no context");
    assert_eq!(approvals.expire_approvals(55, 99_999).await.unwrap(), vec![id("silent")]);
    let silent = store.commands().get_command(&uid, &id("silent"), 56).await.unwrap().unwrap();
    assert_eq!(silent.state, CommandState::Failed);
    assert_eq!(silent.reason, Some(FailureReason::ApprovalExpired.as_reason()));
    // A decision given past the deadline finds it expired, and ends it.
    assert_eq!(
        approvals.decide(&uid, &id("late"), &decision(Verdict::Approve, "a", 61), 99_999).await.unwrap(),
        Decided::Expired
    );
    assert_eq!(state_of(store, &uid, "late").await, CommandState::Failed);
    // The requester may still cancel one that waits.
    submit_held(store, &uid, "withdrawn", 1, 1_000).await;
    let was = store.commands().cancel_queued(&uid, &id("withdrawn"), "requester", 70, 99_999).await.unwrap();
    assert_eq!(was, Some(CommandState::PendingApproval));
    assert_eq!(state_of(store, &uid, "withdrawn").await, CommandState::Canceled);
}

async fn a_held_run_starts_no_target_until_approved_as_a_whole(s: &Subject) {
    let store = s.store.as_ref();
    let c1 = cluster(store, "rg", "c1", json!({})).await;
    let scope = RunScope::new(format!("/subscriptions/{SUB}"));
    let held = |name: &str, deadline: i64| NewRun {
        id: RunId::from_text(name),
        scope: scope.clone(),
        command: "true".into(),
        context: Vec::new(),
        cluster_token: None,
        max_concurrency: Limit::Count(5),
        max_errors: Limit::Percent(100),
        created_at: 1,
        created_by: "app (requester)".into(),
        targets: vec![NewTarget { cluster_uid: Some(c1.to_string()), cluster_id: "c1".into(), skipped: None }],
        hold: Some(Hold { needed: 2, deadline, requester: "requester".into() }),
    };
    let (runs, approvals) = (store.runs(), store.approvals());
    runs.insert_run(held("held", 1_000), &lease("a", 0)).await.unwrap();
    let run = RunId::from_text("held");
    assert_eq!(runs.lease_runs(&lease("a", 1)).await.unwrap(), vec![run.clone()], "driven while it waits");
    let read = runs.get_run(&run, None, TargetWindow::All).await.unwrap().unwrap();
    assert_eq!((read.state, read.hold.as_ref().map(|h| h.needed)), (RunState::PendingApproval, Some(2)));
    assert_eq!(runs.start_target(&run, 0, &id("t0"), &lease("a", 2)).await.unwrap(), TargetStart::Refused);
    let decide = |verdict, who: &str, at| {
        let (run, key, d) = (run.clone(), scope.key.clone(), decision(verdict, who, at));
        async move { approvals.decide_run(&run, &key, &d).await.unwrap() }
    };
    assert_eq!(decide(Verdict::Approve, "requester", 3).await, Decided::OwnCommand);
    assert_eq!(decide(Verdict::Approve, "first", 4).await, Decided::Counted { approvals: 1, needed: 2 });
    assert_eq!(decide(Verdict::Approve, "first", 5).await, Decided::AlreadyApproved);
    assert_eq!(decide(Verdict::Approve, "second", 6).await, Decided::Released);
    let read = runs.get_run(&run, None, TargetWindow::All).await.unwrap().unwrap();
    assert!(read.approved() && read.state == RunState::Accepted);
    assert_eq!(read.decisions.len(), 2);
    assert_eq!(runs.start_target(&run, 0, &id("t0"), &lease("a", 7)).await.unwrap(), TargetStart::Started);
    assert_eq!(decide(Verdict::Reject, "third", 8).await, Decided::NotPending("Running"));

    runs.insert_run(held("rejected", 1_000), &lease("a", 0)).await.unwrap();
    let rejected = RunId::from_text("rejected");
    let no = decision(Verdict::Reject, "first", 9);
    assert_eq!(approvals.decide_run(&rejected, &scope.key, &no).await.unwrap(), Decided::Rejected);
    let read = runs.get_run(&rejected, None, TargetWindow::All).await.unwrap().unwrap();
    assert_eq!(read.targets[0].state, TargetState::Canceled);
    assert_eq!(read.cancel_requested_by.as_deref(), Some("Rejected by app (first): first says so"));
    assert_eq!(
        approvals.decide_run(&rejected, &scope.key, &decision(Verdict::Approve, "x", 10)).await.unwrap(),
        Decided::NotPending("Canceled")
    );
    assert!(runs.finish_run(&rejected, RunState::Canceled, 11).await.unwrap(), "a canceled waiting run ends");

    runs.insert_run(held("silent", 50), &lease("a", 0)).await.unwrap();
    let silent = RunId::from_text("silent");
    assert!(!approvals.expire_run(&silent, 40).await.unwrap(), "not before its deadline");
    assert!(approvals.expire_run(&silent, 60).await.unwrap());
    let read = runs.get_run(&silent, None, TargetWindow::All).await.unwrap().unwrap();
    assert_eq!(read.targets[0].state, TargetState::Skipped);
    assert!(read.targets[0].reason.as_deref().unwrap().starts_with("ApprovalExpired"));
    assert!(
        approvals.decide_run(&silent, "/subscriptions/other", &decision(Verdict::Approve, "x", 10)).await.unwrap()
            == Decided::NotFound,
        "found only in its scope"
    );
}

async fn approvals_are_deleted_with_their_command(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit_held(store, &uid, "held", 2, 1_000).await;
    store.approvals().decide(&uid, &id("held"), &decision(Verdict::Approve, "a", 2), 99_999).await.unwrap();
    assert_eq!(s.count("SELECT COUNT(*) FROM approvals").await, 1);
    assert!(store.clusters().delete_cluster(&cluster_ref("rg", "c1")).await.unwrap());
    assert_eq!(s.count("SELECT COUNT(*) FROM approvals").await, 0);
}

fn lease(owner: &str, now: i64) -> Lease {
    Lease { owner: owner.into(), now, until: now + 20_000 }
}

fn exited(code: i32) -> Outcome {
    Outcome::Exited { exit_code: code, logs: format!("exit {code}\n") }
}

async fn state_of(store: &dyn Store, cluster_uid: &ClusterUid, name: &str) -> CommandState {
    store.commands().get_command(cluster_uid, &id(name), 1).await.unwrap().expect("the command exists").state
}

fn principal(app_id: &str, created_at: i64) -> PrincipalRecord {
    PrincipalRecord {
        app_id: app_id.into(),
        object_id: format!("obj-{app_id}"),
        display_name: app_id.into(),
        secret_salt: vec![1],
        secret_hash: vec![2],
        created_at,
    }
}

fn assignment(name: &str, principal_id: &str, created_at: i64) -> RoleAssignmentRecord {
    RoleAssignmentRecord {
        name: name.into(),
        scope: format!("/subscriptions/{SUB}"),
        role_definition_id: "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(),
        principal_id: principal_id.into(),
        principal_type: "ServicePrincipal".into(),
        created_at,
    }
}

async fn principals_are_listed_in_creation_order_and_deleted_with_their_assignments(s: &Subject) {
    let store = s.store.as_ref();
    for (app, at) in [("zeta", 1), ("alpha", 2), ("mid", 3), ("tie-b", 4), ("tie-a", 4)] {
        store.identity().create_principal(principal(app, at)).await.unwrap();
    }
    let listed: Vec<String> = store.identity().list_principals().await.unwrap().into_iter().map(|p| p.app_id).collect();
    assert_eq!(listed, ["zeta", "alpha", "mid", "tie-a", "tie-b"], "by creation, then app id");
    assert_eq!(store.identity().principal_by_app_id("alpha").await.unwrap().unwrap().object_id, "obj-alpha");
    store.identity().put_role_assignment(assignment("a1", "obj-alpha", 5)).await.unwrap();
    assert!(store.identity().delete_principal("alpha").await.unwrap());
    assert!(!store.identity().delete_principal("alpha").await.unwrap(), "a second delete finds nothing");
    assert!(store.identity().principal_by_app_id("alpha").await.unwrap().is_none());
    assert!(
        store.identity().role_assignments_of("obj-alpha").await.unwrap().is_empty(),
        "its assignments went with it"
    );
}

async fn role_assignments_keep_the_first_write_and_list_in_creation_order(s: &Subject) {
    let store = s.store.as_ref();
    for (name, at) in [("z-last-name", 1), ("a-first-name", 2), ("tie-b", 3), ("tie-a", 3)] {
        let put = store.identity().put_role_assignment(assignment(name, "p1", at)).await.unwrap();
        assert!(put.created);
    }
    let mut changed = assignment("z-last-name", "p2", 9);
    changed.scope = "/".into();
    let again = store.identity().put_role_assignment(changed).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.value, assignment("z-last-name", "p1", 1), "an existing assignment is returned unchanged");
    let names: Vec<String> =
        store.identity().list_role_assignments().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["z-last-name", "a-first-name", "tie-a", "tie-b"], "by creation, then name");
    let of_p1: Vec<String> =
        store.identity().role_assignments_of("P1").await.unwrap().iter().map(|a| a.name.clone()).collect();
    assert_eq!(of_p1, ["z-last-name", "a-first-name", "tie-a", "tie-b"], "principal ids compare case-insensitively");
    assert_eq!(store.identity().delete_role_assignment("a-first-name").await.unwrap().unwrap().principal_id, "p1");
    assert!(store.identity().delete_role_assignment("a-first-name").await.unwrap().is_none());
    assert!(store.identity().get_role_assignment("a-first-name").await.unwrap().is_none());
}

async fn groups_and_clusters_round_trip_and_a_cluster_needs_its_group(s: &Subject) {
    let store = s.store.as_ref();
    let write = ClusterWrite { cluster: cluster_ref("missing", "c1"), document: Map::new(), kubeconfig: None };
    assert!(matches!(store.clusters().put_cluster(write).await, Err(kubeinvoke::store::StoreError::GroupNotFound)));
    let uid = cluster(store, "RG", "c1", json!({"dnsPrefix": "x"})).await;
    // Names compare case-insensitively, as ARM's do.
    let found =
        store.clusters().get_cluster(&cluster_ref("rg", "C1")).await.unwrap().expect("found case-insensitively");
    assert_eq!(found.uid, uid);
    assert_eq!(found.document["properties"]["dnsPrefix"], "x");
    assert_eq!(found.kubeconfig.as_deref().map(Vec::as_slice), Some(&b"kc"[..]));
    let again = cluster(store, "rg", "c1", json!({"dnsPrefix": "y"})).await;
    assert_eq!(again, uid, "a replaced cluster keeps its identity");
    assert_eq!(store.clusters().list_subscriptions().await.unwrap(), [SUB]);
    assert!(
        store
            .clusters()
            .delete_group(&SubscriptionId::parse(SUB).unwrap(), &GroupName::parse("rg").unwrap())
            .await
            .unwrap()
    );
    assert!(
        store.clusters().get_cluster(&cluster_ref("rg", "c1")).await.unwrap().is_none(),
        "clusters go with their group"
    );
}

async fn clusters_list_by_group_then_name_with_a_cursor(s: &Subject) {
    let store = s.store.as_ref();
    for (g, c) in [("b", "x"), ("a", "z"), ("b", "a"), ("a", "y")] {
        cluster(store, g, c, json!({})).await;
    }
    let sub = SubscriptionId::parse(SUB).unwrap();
    let names = |records: Vec<kubeinvoke::store::ClusterRecord>| -> Vec<String> {
        records.into_iter().map(|r| format!("{}/{}", r.group, r.name)).collect()
    };
    let all = names(store.clusters().list_clusters(&sub, None, None, 10).await.unwrap());
    assert_eq!(all, ["a/y", "a/z", "b/a", "b/x"]);
    let page = store.clusters().list_clusters(&sub, None, None, 2).await.unwrap();
    let last = page.last().unwrap();
    let cursor = (last.group.to_lowercase(), last.name.to_lowercase());
    assert_eq!(names(store.clusters().list_clusters(&sub, None, Some(cursor), 10).await.unwrap()), ["b/a", "b/x"]);
    let in_b =
        names(store.clusters().list_clusters(&sub, Some(&GroupName::parse("b").unwrap()), None, 10).await.unwrap());
    assert_eq!(in_b, ["b/a", "b/x"]);
}

/// Creates the group if needed and a cluster carrying `tags`.
async fn tagged(store: &dyn Store, group_name: &str, name: &str, tags: Value) {
    group(store, group_name).await;
    let document = json!({"location": "westeurope", "tags": tags, "properties": {}}).as_object().unwrap().clone();
    let write = ClusterWrite { cluster: cluster_ref(group_name, name), document, kubeconfig: None };
    store.clusters().put_cluster(write).await.unwrap();
}

/// The names (`group/cluster`) of the clusters carrying every pair, read `limit` at a time.
async fn selected(store: &dyn Store, group: Option<&str>, wanted: &[(&str, &str)], limit: usize) -> Vec<String> {
    let sub = SubscriptionId::parse(SUB).unwrap();
    let group = group.map(|g| GroupName::parse(g).unwrap());
    let wanted: Vec<(String, String)> = wanted.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut names: Vec<String> = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.clusters().list_tagged_clusters(&sub, group.as_ref(), &wanted, after.clone(), limit).await.unwrap();
        assert!(page.len() <= limit);
        let done = page.len() < limit;
        after = page.last().map(|c| (c.group.to_lowercase(), c.name.to_lowercase()));
        names.extend(page.into_iter().map(|c| format!("{}/{}", c.group, c.name)));
        if done {
            return names;
        }
    }
}

async fn clusters_are_selected_by_every_tag_with_names_ignoring_ascii_case(s: &Subject) {
    let store = s.store.as_ref();
    tagged(store, "b", "x", json!({"Env": "prod", "team": "a"})).await;
    tagged(store, "a", "z", json!({"env": "prod"})).await;
    tagged(store, "a", "y", json!({"ENV": "Prod", "team": "a"})).await;
    tagged(store, "b", "n", json!({"env": 1, "team": ["a"]})).await;
    tagged(store, "b", "u", json!({"ÄNV": "prod", "äNV": "x"})).await;
    cluster(store, "a", "untagged", json!({})).await;

    assert_eq!(selected(store, None, &[("env", "prod")], 10).await, ["a/z", "b/x"]);
    assert_eq!(selected(store, None, &[("env", "prod")], 1).await, ["a/z", "b/x"], "paged one at a time");
    assert_eq!(selected(store, None, &[("ENV", "prod"), ("Team", "a")], 10).await, ["b/x"]);
    assert_eq!(selected(store, None, &[("env", "Prod")], 10).await, ["a/y"], "values compare exactly");
    assert_eq!(selected(store, Some("a"), &[("env", "prod")], 10).await, ["a/z"], "within one group");
    assert!(selected(store, None, &[("env", "1")], 10).await.is_empty(), "only string values are tags");
    assert!(selected(store, None, &[("env", "prod"), ("team", "b")], 10).await.is_empty());
    // ASCII case only, as Azure's names (and the store's keys) compare.
    assert_eq!(selected(store, None, &[("änv", "x")], 10).await, ["b/u"]);
    assert!(selected(store, None, &[("änv", "prod")], 10).await.is_empty());
    // The same pair asked twice in two casings still asks one tag.
    assert_eq!(selected(store, None, &[("env", "prod"), ("ENV", "prod")], 10).await, ["a/z", "b/x"]);

    // A PUT replaces the tags, a delete takes them along.
    tagged(store, "a", "z", json!({"env": "test"})).await;
    assert_eq!(selected(store, None, &[("env", "prod")], 10).await, ["b/x"]);
    assert!(store.clusters().delete_cluster(&cluster_ref("b", "x")).await.unwrap());
    assert!(selected(store, None, &[("env", "prod")], 10).await.is_empty());
    assert_eq!(s.count("SELECT COUNT(*) FROM cluster_tags WHERE name_key = 'team'").await, 1);
}

async fn hostile_tags_are_plain_data_to_the_selection(s: &Subject) {
    let store = s.store.as_ref();
    let hostile = ["' OR '1'='1", "%", "_", "$.tags", "*", "\\", "a\"b", "{}", "[0]", "x'); DROP TABLE clusters; --"];
    for (i, name) in hostile.iter().enumerate() {
        tagged(store, "rg", &format!("c{i}"), json!({ *name: *name })).await;
    }
    tagged(store, "rg", "plain", json!({"env": "prod"})).await;
    for (i, name) in hostile.iter().enumerate() {
        assert_eq!(selected(store, None, &[(name, name)], 10).await, [format!("rg/c{i}")], "{name}");
    }
    assert!(selected(store, None, &[("' OR '1'='1", "' OR '1'='1' --")], 10).await.is_empty());
    assert_eq!(s.count("SELECT COUNT(*) FROM clusters").await, hostile.len() as i64 + 1);
}

async fn clusters_stored_before_the_tag_index_are_found_by_their_tags(s: &Subject) {
    tagged(s.store.as_ref(), "rg", "old", json!({"Env": "prod", "n": 2, "ÄB": "y"})).await;
    tagged(s.store.as_ref(), "rg", "listed", json!(["env", "prod"])).await;
    cluster(s.store.as_ref(), "rg", "bare", json!({})).await;
    s.before_the_tag_index().await;
    let store = s.reopen().await;
    assert_eq!(selected(store.as_ref(), None, &[("env", "prod")], 10).await, ["rg/old"]);
    assert_eq!(selected(store.as_ref(), None, &[("Äb", "y")], 10).await, ["rg/old"]);
    assert!(selected(store.as_ref(), None, &[("äb", "y")], 10).await.is_empty(), "ASCII case only");
    assert_eq!(s.count("SELECT COUNT(*) FROM cluster_tags").await, 2, "only string tags are indexed");
}

async fn a_cluster_put_without_kubeconfig_keeps_the_stored_one(s: &Subject) {
    let store = s.store.as_ref();
    cluster(store, "rg", "c1", json!({})).await;
    let write = ClusterWrite { cluster: cluster_ref("rg", "c1"), document: Map::new(), kubeconfig: None };
    let put = store.clusters().put_cluster(write).await.unwrap();
    assert!(!put.created);
    let stored = store.clusters().get_cluster(&cluster_ref("rg", "c1")).await.unwrap().unwrap();
    assert_eq!(stored.kubeconfig.as_deref().map(Vec::as_slice), Some(&b"kc"[..]));
}

async fn claims_take_the_oldest_accepted_command_once_with_its_cluster_settings(s: &Subject) {
    let store = s.store.as_ref();
    let uid =
        cluster(store, "rg", "c1", json!({"commandExecutor": "kubernetes", "commandLimits": {"timeoutSeconds": 5}}))
            .await;
    // Arrival order decides, not the submitters' clocks (replicas' clocks differ).
    submit(store, &uid, "first", 20).await;
    submit(store, &uid, "second", 10).await;
    assert_eq!(store.commands().count_accepted().await.unwrap(), 2);
    let claimed = store.commands().claim_next(&lease("r1", 100)).await.unwrap().expect("a command");
    assert_eq!(claimed.id, "first", "the first stored is claimed first");
    assert_eq!(claimed.command, "echo first");
    assert_eq!(claimed.context, b"zip");
    assert_eq!(claimed.cluster_token.as_deref(), Some("token"));
    assert_eq!(claimed.kubeconfig.as_deref(), Some(&b"kc"[..]));
    let settings = claimed.settings.clone().expect("the cluster's settings are usable");
    assert_eq!(settings.executor, Some(kubeinvoke::executor::ExecutorKind::Kubernetes));
    assert_eq!(settings.limits.timeout_seconds, Some(5));
    assert_eq!(claimed.submitted_by, "app (object)");
    assert_eq!(state_of(store, &uid, "first").await, CommandState::Running);
    let record = store.commands().get_command(&uid, &id("first"), 100).await.unwrap().unwrap();
    assert_eq!(record.started_at, Some(100));
    assert_eq!(store.commands().claim_next(&lease("r2", 101)).await.unwrap().unwrap().id, "second");
    assert!(store.commands().claim_next(&lease("r1", 102)).await.unwrap().is_none(), "nothing is claimed twice");
    assert_eq!(store.commands().count_accepted().await.unwrap(), 0);
    let mut running = store.commands().running_command_ids().await.unwrap();
    running.sort();
    assert_eq!(running, ["first", "second"]);
}

async fn a_command_stored_running_is_handed_over_with_its_cluster_and_never_claimed(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({"commandLimits": {"timeoutSeconds": 5}})).await;
    let options = CommandOptions { environment: vec![("greeting".into(), "hi".into())], ..Default::default() };
    let mut command = with_options(&uid, "direct", options.clone(), None);
    command.context = b"zip".to_vec();
    command.cluster_token = Some("token".into());
    let claimed = store.commands().insert_running(command, &lease("r1", 100)).await.unwrap();
    assert_eq!((claimed.id.as_str(), claimed.command.as_str()), ("direct", "echo \"$ns\""));
    assert_eq!((claimed.context.as_slice(), claimed.cluster_token.as_deref()), (&b"zip"[..], Some("token")));
    assert_eq!(claimed.kubeconfig.as_deref(), Some(&b"kc"[..]));
    assert_eq!(claimed.settings.expect("usable settings").limits.timeout_seconds, Some(5));
    assert_eq!((claimed.submitted_by.as_str(), &claimed.options), ("app (object)", &options));
    let record = store.commands().get_command(&uid, &id("direct"), 100).await.unwrap().unwrap();
    assert_eq!((record.state, record.started_at), (CommandState::Running, Some(100)));
    assert_eq!(store.commands().count_accepted().await.unwrap(), 0, "it never waited");
    assert!(store.commands().claim_next(&lease("r2", 101)).await.unwrap().is_none(), "nobody else claims it");
    assert_eq!(store.commands().running_command_ids().await.unwrap(), ["direct"]);
    // Owned like a claimed command: its owner's restart interrupts it, and it finishes once.
    assert_eq!(store.commands().interrupt_running("r2", 102, 102 + HOUR).await.unwrap(), 0);
    assert!(store.commands().finish_command(&id("direct"), &exited(0), 103, 103 + HOUR).await.unwrap());
    assert!(!store.commands().finish_command(&id("direct"), &exited(1), 104, 104 + HOUR).await.unwrap());
    // A cluster that is gone refuses it, as it refuses a queued command.
    let mut orphan = with_options(&uid, "orphan", CommandOptions::default(), None);
    orphan.cluster_uid = ClusterUid::from_text("no-such-cluster");
    assert!(store.commands().insert_running(orphan, &lease("r1", 105)).await.is_err());
}

async fn finishing_is_guarded_on_running(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "c", 1).await;
    assert!(
        !store.commands().finish_command(&id("c"), &exited(0), 5, 5 + HOUR).await.unwrap(),
        "an Accepted command cannot finish"
    );
    store.commands().claim_next(&lease("r1", 2)).await.unwrap().unwrap();
    assert!(store.commands().finish_command(&id("c"), &exited(3), 5, 5 + HOUR).await.unwrap());
    let record = store.commands().get_command(&uid, &id("c"), 6).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Succeeded);
    assert_eq!((record.exit_code, record.finished_at, record.expires_at), (Some(3), Some(5), Some(5 + HOUR)));
    assert_eq!(record.logs.as_deref(), Some("exit 3\n"));
    let failed = Outcome::Failed { reason: FailureReason::Timeout, logs: String::new() };
    assert!(!store.commands().finish_command(&id("c"), &failed, 7, 7 + HOUR).await.unwrap(), "a result is stored once");
    assert_eq!(store.commands().get_command(&uid, &id("c"), 8).await.unwrap().unwrap().exit_code, Some(3));
    assert!(store.commands().running_command_ids().await.unwrap().is_empty());
}

async fn cancel_of_a_queued_command_is_guarded_on_accepted(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "queued", 1).await;
    let was = store.commands().cancel_queued(&uid, &id("queued"), "alice", 5, 5 + HOUR).await.unwrap();
    assert_eq!(was, Some(CommandState::Accepted));
    let record = store.commands().get_command(&uid, &id("queued"), 6).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Canceled);
    assert_eq!(record.reason.as_deref(), Some("Canceled by alice"));
    assert!(store.commands().claim_next(&lease("r1", 7)).await.unwrap().is_none(), "a canceled command never runs");
    let again = store.commands().cancel_queued(&uid, &id("queued"), "bob", 8, 8 + HOUR).await.unwrap();
    assert_eq!(again, Some(CommandState::Canceled), "the state it is in, unchanged");
    assert_eq!(store.commands().cancel_queued(&uid, &id("nope"), "bob", 8, 8 + HOUR).await.unwrap(), None);
    let other = cluster(store, "rg", "c2", json!({})).await;
    assert_eq!(
        store.commands().cancel_queued(&other, &id("queued"), "bob", 8, 8 + HOUR).await.unwrap(),
        None,
        "per cluster"
    );
}

async fn a_cancel_asked_elsewhere_reaches_the_owner_at_renewal(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "c", 1).await;
    assert!(!store.commands().request_cancel(&uid, &id("c"), "alice").await.unwrap(), "not running yet");
    store.commands().claim_next(&lease("r1", 2)).await.unwrap().unwrap();
    assert!(store.commands().request_cancel(&uid, &id("c"), "alice").await.unwrap());
    assert!(store.commands().renew_leases("r2", 1_000_000).await.unwrap().is_empty(), "only the owner hears of it");
    let asked = store.commands().renew_leases("r1", 1_000_000).await.unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].id.as_str(), asked[0].by.as_str()), ("c", "alice"));
}

async fn lost_leases_end_worker_lost_and_are_never_reclaimed(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "lost", 1).await;
    submit(store, &uid, "kept", 2).await;
    store.commands().claim_next(&Lease { owner: "dead".into(), now: 10, until: 100 }).await.unwrap().unwrap();
    store.commands().claim_next(&Lease { owner: "alive".into(), now: 10, until: 100 }).await.unwrap().unwrap();
    store.commands().renew_leases("alive", 500).await.unwrap();
    assert!(store.commands().end_lost(99, 99 + HOUR).await.unwrap().is_empty(), "no lease has run out yet");
    assert_eq!(store.commands().end_lost(200, 200 + HOUR).await.unwrap(), ["lost"]);
    let record = store.commands().get_command(&uid, &id("lost"), 201).await.unwrap().unwrap();
    assert_eq!((record.state, record.reason.as_deref()), (CommandState::Failed, Some("WorkerLost")));
    assert_eq!(state_of(store, &uid, "kept").await, CommandState::Running);
    assert!(store.commands().claim_next(&lease("other", 300)).await.unwrap().is_none(), "a lost command is not re-run");
    assert!(
        !store.commands().finish_command(&id("lost"), &exited(0), 301, 301 + HOUR).await.unwrap(),
        "its late result is dropped"
    );
    // Its owner's late word, once: the row says what ran; the state stays as the store had it.
    assert!(!store.commands().report_after_lost(&id("lost"), "alive", 0, "out\n").await.unwrap(), "not its owner");
    assert!(!store.commands().report_after_lost(&id("kept"), "alive", 0, "out\n").await.unwrap(), "still running");
    assert!(store.commands().report_after_lost(&id("lost"), "dead", 0, "out\n").await.unwrap());
    assert!(!store.commands().report_after_lost(&id("lost"), "dead", 1, "again\n").await.unwrap(), "only once");
    let record = store.commands().get_command(&uid, &id("lost"), 302).await.unwrap().unwrap();
    assert_eq!((record.state, record.exit_code), (CommandState::Failed, None));
    let reason = record.reason.unwrap_or_default();
    assert!(reason.starts_with("WorkerLost: ") && reason.contains("exit code 0"), "{reason}");
    assert_eq!(record.logs.as_deref(), Some("out\n"));
}

async fn interrupt_ends_the_owners_and_unowned_running_commands_only(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    for (name, at) in [("mine", 1), ("theirs", 2), ("queued", 3)] {
        submit(store, &uid, name, at).await;
    }
    store.commands().claim_next(&lease("me", 10)).await.unwrap().unwrap();
    store.commands().claim_next(&lease("them", 10)).await.unwrap().unwrap();
    assert_eq!(store.commands().interrupt_running("me", 20, 20 + HOUR).await.unwrap(), 1);
    let mine = store.commands().get_command(&uid, &id("mine"), 21).await.unwrap().unwrap();
    assert_eq!((mine.state, mine.reason.as_deref()), (CommandState::Failed, Some("Interrupted")));
    assert_eq!(mine.logs.as_deref(), Some(""), "a result always has logs");
    assert_eq!(state_of(store, &uid, "theirs").await, CommandState::Running, "another replica's command runs on");
    assert_eq!(state_of(store, &uid, "queued").await, CommandState::Accepted, "queued work is resumed, not ended");
    // A Running row of no owner (written before replicas had ids) died with whatever ran it.
    store.commands().claim_next(&lease("them", 30)).await.unwrap().unwrap();
    s.raw("UPDATE commands SET owner = NULL WHERE id = 'queued'").await;
    assert_eq!(store.commands().interrupt_running("me", 40, 40 + HOUR).await.unwrap(), 1);
    assert_eq!(
        store.commands().get_command(&uid, &id("queued"), 41).await.unwrap().unwrap().reason.as_deref(),
        Some("Interrupted")
    );
    assert_eq!(state_of(store, &uid, "theirs").await, CommandState::Running);
}

async fn history_is_newest_first_with_paging_and_hides_expired(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        submit(store, &uid, name, i as i64).await;
    }
    let ids =
        |page: &[kubeinvoke::command::CommandSummary]| page.iter().map(|s| s.record.id.clone()).collect::<Vec<_>>();
    let first = store.commands().list_commands(&uid, None, 2, 10).await.unwrap();
    assert_eq!(ids(&first), ["d", "c"]);
    let rest = store.commands().list_commands(&uid, Some(first[1].seq), 10, 10).await.unwrap();
    assert_eq!(ids(&rest), ["b", "a"]);
    assert_eq!(rest[0].command, "echo b");
    store.commands().claim_next(&lease("r", 10)).await.unwrap().unwrap(); // "a"
    store.commands().finish_command(&id("a"), &exited(0), 11, 50).await.unwrap();
    assert_eq!(ids(&store.commands().list_commands(&uid, None, 10, 49).await.unwrap()), ["d", "c", "b", "a"]);
    assert_eq!(
        ids(&store.commands().list_commands(&uid, None, 10, 50).await.unwrap()),
        ["d", "c", "b"],
        "expired is hidden"
    );
    assert!(store.commands().get_command(&uid, &id("a"), 50).await.unwrap().is_none());
}

async fn purge_deletes_only_expired_results(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "old", 1).await;
    submit(store, &uid, "new", 2).await;
    submit(store, &uid, "queued", 3).await;
    for (name, expires) in [("old", 100), ("new", 1_000)] {
        store.commands().claim_next(&lease("r", 5)).await.unwrap().unwrap();
        store.commands().finish_command(&id(name), &exited(0), 6, expires).await.unwrap();
    }
    assert_eq!(store.commands().purge_expired(100).await.unwrap(), ["old"]);
    assert!(store.commands().purge_expired(100).await.unwrap().is_empty());
    assert_eq!(state_of(store, &uid, "queued").await, CommandState::Accepted);
    assert_eq!(
        store.commands().get_command(&uid, &id("new"), 999).await.unwrap().unwrap().state,
        CommandState::Succeeded
    );
}

async fn deleting_a_cluster_deletes_its_commands(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "running", 1).await;
    submit(store, &uid, "queued", 2).await;
    store.commands().claim_next(&lease("r", 5)).await.unwrap().unwrap();
    assert!(store.clusters().delete_cluster(&cluster_ref("rg", "c1")).await.unwrap());
    assert!(!store.clusters().delete_cluster(&cluster_ref("rg", "c1")).await.unwrap());
    assert_eq!(store.commands().count_accepted().await.unwrap(), 0);
    assert!(store.commands().claim_next(&lease("r", 6)).await.unwrap().is_none());
    assert!(
        !store.commands().finish_command(&id("running"), &exited(0), 7, 7 + HOUR).await.unwrap(),
        "its result has nowhere to go"
    );
    let recreated = cluster(store, "rg", "c1", json!({})).await;
    assert_ne!(recreated, uid, "a re-created cluster is a new cluster");
    assert!(store.commands().list_commands(&recreated, None, 10, 8).await.unwrap().is_empty());
}

async fn settings_keep_the_first_value(s: &Subject) {
    let store = s.store.as_ref();
    assert_eq!(store.settings().get_setting("k").await.unwrap(), None);
    assert_eq!(store.settings().init_setting("k", b"one".to_vec()).await.unwrap(), b"one");
    assert_eq!(store.settings().init_setting("k", b"two".to_vec()).await.unwrap(), b"one", "the first value wins");
    assert_eq!(store.settings().get_setting("k").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.ping().await.unwrap();
}

async fn a_stored_setting_that_cannot_be_used_reaches_the_claim_as_an_error(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "c", 1).await;
    // Written around the API (an older version, or a hand edit): the claim still hands the
    // command over, with the setting's error, so it fails naming it instead of running wrongly.
    s.raw(r#"UPDATE clusters SET document = '{"properties": {"commandExecutor": "vm"}}'"#).await;
    let claimed = store.commands().claim_next(&lease("r", 2)).await.unwrap().expect("claimed");
    assert_eq!(claimed.settings.unwrap_err().property, "properties.commandExecutor");
}

fn with_options(cluster_uid: &ClusterUid, name: &str, options: CommandOptions, pinned: Option<Lease>) -> NewCommand {
    NewCommand {
        id: id(name),
        cluster_uid: cluster_uid.clone(),
        command: "echo \"$ns\"".into(),
        context: Vec::new(),
        cluster_token: None,
        submitted_at: 1,
        submitted_by: "app (object)".into(),
        options,
        pinned,
        hold: None,
    }
}

async fn command_options_round_trip_and_secret_values_have_no_column(s: &Subject) {
    let store = s.store.as_ref();
    let c = cluster(store, "rg", "c1", json!({})).await;
    let options = CommandOptions {
        environment: vec![("level".into(), "info".into()), ("ns".into(), "kube-system".into())],
        secret_names: vec!["token".into()],
        timeout: Some(std::time::Duration::from_secs(7)),
        saved_command: Some("/subscriptions/s/providers/Microsoft.ContainerService/savedCommands/pods".into()),
        run_as: Some(RunAs::User { user: "jane".into(), groups: vec!["readers".into()] }),
    };
    store.commands().insert_command(with_options(&c, "saved", options.clone(), None)).await.unwrap();
    let claimed = store.commands().claim_next(&lease("a", 10)).await.unwrap().expect("claimed");
    assert_eq!(claimed.options, options);
    let history = store.commands().list_commands(&c, None, 10, 20).await.unwrap();
    assert_eq!(history[0].parameters, options.environment);
    assert_eq!(history[0].secret_names, ["token"]);
    assert_eq!(history[0].saved_command, options.saved_command);
    assert_eq!(history[0].run_as, options.run_as, "whom it ran as is kept with it");
}

async fn a_pinned_command_is_claimed_only_by_its_replica_and_never_outlives_it(s: &Subject) {
    let store = s.store.as_ref();
    let c = cluster(store, "rg", "c1", json!({})).await;
    let secret = CommandOptions { secret_names: vec!["token".into()], ..Default::default() };
    store.commands().insert_command(with_options(&c, "pinned", secret.clone(), Some(lease("a", 0)))).await.unwrap();
    assert!(store.commands().claim_next(&lease("b", 10)).await.unwrap().is_none(), "another replica never takes it");
    let claimed = store.commands().claim_next(&lease("a", 10)).await.unwrap().expect("its own replica does");
    assert_eq!(claimed.id, id("pinned"));

    // Pinned to a replica that restarts: it ends SecretsLost, it never runs.
    store.commands().insert_command(with_options(&c, "restarted", secret.clone(), Some(lease("a", 0)))).await.unwrap();
    store.commands().interrupt_running("a", 30, 30 + HOUR).await.unwrap();
    assert_eq!(state_of(store, &c, "restarted").await, CommandState::Failed);
    let result = store.commands().get_command(&c, &id("restarted"), 40).await.unwrap().unwrap();
    assert!(result.reason.unwrap().starts_with("SecretsLost"));

    // Pinned to a replica that dies: renewed while it lives, WorkerLost once its lease runs out.
    store.commands().insert_command(with_options(&c, "orphan", secret, Some(lease("b", 0)))).await.unwrap();
    store.commands().renew_leases("b", 50_000).await.unwrap();
    assert!(store.commands().end_lost(40_000, 40_000 + HOUR).await.unwrap().is_empty(), "renewed: not lost");
    assert_eq!(store.commands().end_lost(60_000, 60_000 + HOUR).await.unwrap(), vec![id("orphan")]);
    assert_eq!(state_of(store, &c, "orphan").await, CommandState::Failed);
}

fn document(kind: DocumentKind, scope: &str, name: &str, value: Value, at: i64) -> DocumentRecord {
    DocumentRecord {
        kind,
        scope: scope.into(),
        name: name.into(),
        document: value.as_object().unwrap().clone(),
        created_at: at,
        updated_at: at,
    }
}

async fn documents_keep_their_first_spelling_and_list_by_scope(s: &Subject) {
    let docs = s.store.documents();
    let sub = format!("/subscriptions/{SUB}");
    let put = docs.put_document(document(DocumentKind::SavedCommand, &sub, "Pods", json!({"v": 1}), 1)).await.unwrap();
    assert!(put.created);
    let put = docs
        .put_document(document(DocumentKind::SavedCommand, &sub.to_uppercase(), "PODS", json!({"v": 2}), 5))
        .await
        .unwrap();
    assert!(!put.created);
    assert_eq!((put.value.name.as_str(), put.value.created_at, put.value.updated_at), ("Pods", 1, 5));
    docs.put_document(document(DocumentKind::SavedCommand, &format!("{sub}/resourceGroups/rg"), "x", json!({}), 2))
        .await
        .unwrap();
    docs.put_document(document(DocumentKind::RoleDefinition, "/", "guid", json!({}), 3)).await.unwrap();
    let found = docs.get_document(DocumentKind::SavedCommand, &sub, "pods").await.unwrap().unwrap();
    assert_eq!(found.document["v"], 2);
    assert!(docs.get_document(DocumentKind::RoleDefinition, &sub, "pods").await.unwrap().is_none(), "kinds apart");
    assert_eq!(docs.list_documents(DocumentKind::SavedCommand, Some(&sub)).await.unwrap().len(), 1);
    assert_eq!(docs.list_documents(DocumentKind::SavedCommand, None).await.unwrap().len(), 2);
    assert!(docs.delete_document(DocumentKind::SavedCommand, &sub, "PODS").await.unwrap());
    assert!(!docs.delete_document(DocumentKind::SavedCommand, &sub, "pods").await.unwrap());
}

async fn a_run_target_starts_once_under_the_lease_and_a_cancel_stops_the_rest(s: &Subject) {
    let store = s.store.as_ref();
    let c1 = cluster(store, "rg", "c1", json!({})).await;
    let c2 = cluster(store, "rg", "c2", json!({})).await;
    let scope = RunScope::new(format!("/subscriptions/{SUB}"));
    let target = |uid: &ClusterUid, skipped: Option<&str>| NewTarget {
        cluster_uid: Some(uid.to_string()),
        cluster_id: format!("id-{uid}"),
        skipped: skipped.map(str::to_string),
    };
    let run = NewRun {
        id: RunId::from_text("run1"),
        scope: scope.clone(),
        command: "true".into(),
        context: Vec::new(),
        cluster_token: None,
        max_concurrency: Limit::Count(1),
        max_errors: Limit::Percent(100),
        created_at: 1,
        created_by: "app (object)".into(),
        targets: vec![target(&c1, None), target(&c2, None), target(&c1, Some("AuthorizationFailed: no"))],
        hold: None,
    };
    let runs = store.runs();
    runs.insert_run(run, &lease("a", 0)).await.unwrap();
    let run_id = RunId::from_text("run1");
    assert!(runs.lease_runs(&lease("b", 5)).await.unwrap().is_empty(), "leased to its submitter");
    assert_eq!(runs.lease_runs(&lease("a", 5)).await.unwrap(), vec![run_id.clone()]);
    assert_eq!(runs.start_target(&run_id, 0, &id("t0"), &lease("b", 6)).await.unwrap(), TargetStart::Refused);
    assert_eq!(runs.start_target(&run_id, 0, &id("t0"), &lease("a", 6)).await.unwrap(), TargetStart::Started);
    assert_eq!(runs.start_target(&run_id, 0, &id("t0b"), &lease("a", 6)).await.unwrap(), TargetStart::Refused, "once");
    assert_eq!(state_of(store, &c1, "t0").await, CommandState::Accepted);
    let read = runs.get_run(&run_id, Some(&scope.key), TargetWindow::All).await.unwrap().unwrap();
    assert_eq!(read.state, RunState::Running);
    let states: Vec<TargetState> = read.targets.iter().map(|t| t.state).collect();
    assert_eq!(states, [TargetState::Accepted, TargetState::Pending, TargetState::Skipped]);
    assert!(
        runs.get_run(&run_id, Some("/subscriptions/other"), TargetWindow::All).await.unwrap().is_none(),
        "found only in its scope"
    );
    // A reader gets a page of the targets and the counts of all of them.
    let page = |after, limit| TargetWindow::Page { after, limit };
    let first = runs.get_run(&run_id, Some(&scope.key), page(None, 2)).await.unwrap().unwrap();
    assert_eq!(first.targets.iter().map(|t| t.position).collect::<Vec<_>>(), [0, 1]);
    let counted =
        |run: &kubeinvoke::fanout::RunRecord, state| run.counts().iter().find(|(s, _)| *s == state).unwrap().1;
    assert_eq!(
        [TargetState::Accepted, TargetState::Pending, TargetState::Skipped, TargetState::Succeeded]
            .map(|s| counted(&first, s)),
        [1, 1, 1, 0]
    );
    assert!(first.paged.as_ref().unwrap().more);
    let rest = runs.get_run(&run_id, Some(&scope.key), page(Some(1), 2)).await.unwrap().unwrap();
    assert_eq!(rest.targets.iter().map(|t| (t.position, t.state)).collect::<Vec<_>>(), [(2, TargetState::Skipped)]);
    assert!(!rest.paged.as_ref().unwrap().more, "nothing after the last");
    assert_eq!(rest.counts(), first.counts());
    let listed = runs.list_runs(&scope.key, None, 10, 1).await.unwrap();
    assert_eq!((listed[0].targets.len(), listed[0].counts()), (1, first.counts()));

    let canceled = runs.cancel_run(&run_id, &scope.key, "someone").await.unwrap().unwrap();
    assert_eq!(canceled.targets[1].state, TargetState::Canceled);
    assert_eq!(runs.start_target(&run_id, 1, &id("t1"), &lease("a", 7)).await.unwrap(), TargetStart::Refused);
    assert!(runs.finish_run(&run_id, RunState::Canceled, 9).await.unwrap());
    assert!(!runs.finish_run(&run_id, RunState::Failed, 10).await.unwrap(), "ends once");
    // The run keeps its targets' outcomes after their commands are gone.
    store.clusters().delete_cluster(&cluster_ref("rg", "c1")).await.unwrap();
    let read = runs.get_run(&run_id, None, TargetWindow::All).await.unwrap().unwrap();
    assert_eq!(read.targets[0].state, TargetState::Accepted, "as the command was when the run ended");
    assert_eq!(runs.list_runs(&scope.key, None, 10, 100).await.unwrap().len(), 1);
    assert_eq!(runs.purge_runs(10).await.unwrap(), 1);
}

async fn settled_targets_keep_their_commands_end_and_unfinished_ones_stay_live(s: &Subject) {
    let store = s.store.as_ref();
    let c1 = cluster(store, "rg", "c1", json!({})).await;
    let scope = RunScope::new(format!("/subscriptions/{SUB}"));
    let target = || NewTarget { cluster_uid: Some(c1.to_string()), cluster_id: "id".into(), skipped: None };
    let run = NewRun {
        id: RunId::from_text("run1"),
        scope: scope.clone(),
        command: "true".into(),
        context: Vec::new(),
        cluster_token: None,
        max_concurrency: Limit::Count(3),
        max_errors: Limit::Percent(100),
        created_at: 1,
        created_by: "app (object)".into(),
        targets: vec![target(), target(), target()],
        hold: None,
    };
    let (runs, run_id) = (store.runs(), RunId::from_text("run1"));
    runs.insert_run(run, &lease("a", 0)).await.unwrap();
    for (position, name) in [(0, "t0"), (1, "t1")] {
        assert_eq!(
            runs.start_target(&run_id, position, &id(name), &lease("a", 2)).await.unwrap(),
            TargetStart::Started
        );
    }
    assert_eq!(runs.settle_targets(&run_id).await.unwrap(), 0, "nothing has ended");
    store.commands().claim_next(&lease("a", 3)).await.unwrap().expect("t0 claimed");
    assert!(store.commands().finish_command(&id("t0"), &exited(3), 4, 4 + HOUR).await.unwrap());
    assert_eq!(runs.settle_targets(&run_id).await.unwrap(), 1, "t0 ended");
    assert_eq!(runs.settle_targets(&run_id).await.unwrap(), 0, "settled once");

    // The settled end is the target's own: it outlives its command, the others stay live.
    s.raw("DELETE FROM commands WHERE id = 't0'").await;
    store.commands().claim_next(&lease("a", 5)).await.unwrap().expect("t1 claimed");
    let page = TargetWindow::Page { after: None, limit: 2 };
    for window in [TargetWindow::All, page] {
        let read = runs.get_run(&run_id, Some(&scope.key), window).await.unwrap().unwrap();
        let shown: Vec<(i64, TargetState, Option<i32>)> =
            read.targets.iter().map(|t| (t.position, t.state, t.exit_code)).collect();
        assert_eq!(shown[..2], [(0, TargetState::Succeeded, Some(3)), (1, TargetState::Running, None)]);
        let counted = |state| read.counts().iter().find(|(s, _)| *s == state).unwrap().1;
        assert_eq!(
            [TargetState::Succeeded, TargetState::Running, TargetState::Pending].map(counted),
            [1, 1, 1],
            "counted from both halves"
        );
    }
}

async fn a_running_command_canceled_ends_canceled_naming_who_and_keeps_its_output(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    submit(store, &uid, "c", 1).await;
    store.commands().claim_next(&lease("r1", 2)).await.unwrap().unwrap();
    let canceled = Outcome::Failed { reason: FailureReason::Canceled("alice".into()), logs: "partial\n".into() };
    assert!(store.commands().finish_command(&id("c"), &canceled, 5, 5 + HOUR).await.unwrap());
    let record = store.commands().get_command(&uid, &id("c"), 6).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Canceled);
    assert_eq!(record.reason.as_deref(), Some("Canceled by alice"));
    assert_eq!((record.logs.as_deref(), record.exit_code), (Some("partial\n"), None));
    assert!(store.commands().running_command_ids().await.unwrap().is_empty());
    assert!(store.commands().renew_leases("r1", 1_000).await.unwrap().is_empty(), "no lease is left to renew");
}

/// Every transition, tried on a command in each terminal state: none changes it.
async fn a_finished_command_is_left_alone_by_every_transition(s: &Subject) {
    let store = s.store.as_ref();
    let uid = cluster(store, "rg", "c1", json!({})).await;
    let endings = [
        ("succeeded", exited(0)),
        ("failed", Outcome::Failed { reason: FailureReason::Timeout, logs: String::new() }),
        ("canceled", Outcome::Failed { reason: FailureReason::Canceled("bob".into()), logs: String::new() }),
    ];
    for (at, (name, outcome)) in endings.iter().enumerate() {
        submit(store, &uid, name, at as i64).await;
        let claimed = store.commands().claim_next(&Lease { owner: "r1".into(), now: 10, until: 20 }).await.unwrap();
        assert_eq!(claimed.unwrap().id, *name);
        assert!(store.commands().finish_command(&id(name), outcome, 11, 11 + HOUR).await.unwrap());
    }
    let before: Vec<_> = endings.iter().map(|(name, outcome)| (*name, outcome.state())).collect();
    for (name, _) in &before {
        assert!(!store.commands().finish_command(&id(name), &exited(9), 30, 30 + HOUR).await.unwrap());
        assert!(!store.commands().request_cancel(&uid, &id(name), "carol").await.unwrap());
        let was = store.commands().cancel_queued(&uid, &id(name), "carol", 30, 30 + HOUR).await.unwrap();
        assert!(was.is_some_and(CommandState::is_terminal), "{name} reports its final state");
    }
    assert!(store.commands().end_lost(1_000, 1_000 + HOUR).await.unwrap().is_empty(), "their leases do not matter");
    assert_eq!(store.commands().interrupt_running("r1", 1_000, 1_000 + HOUR).await.unwrap(), 0);
    assert!(store.commands().claim_next(&lease("r2", 1_000)).await.unwrap().is_none());
    for (name, state) in before {
        let record = store.commands().get_command(&uid, &id(name), 1_000).await.unwrap().unwrap();
        assert_eq!((record.state, record.finished_at), (state, Some(11)), "{name} unchanged");
        assert_ne!(record.exit_code, Some(9));
    }
}

async fn one_pending_target_is_skipped_and_clusters_are_found_by_uid(s: &Subject) {
    let store = s.store.as_ref();
    let first = cluster(store, "rg", "c1", json!({})).await;
    let second = cluster(store, "rg", "c2", json!({})).await;
    let found = store.clusters().cluster_by_uid(&first).await.unwrap().expect("found by its uid");
    assert_eq!((found.name.as_str(), &found.uid), ("c1", &first));
    // A re-created cluster of the same name is another cluster: its old uid finds nothing.
    store.clusters().delete_cluster(&cluster_ref("rg", "c1")).await.unwrap();
    let again = cluster(store, "rg", "c1", json!({})).await;
    assert!(store.clusters().cluster_by_uid(&first).await.unwrap().is_none());
    assert_ne!(again, first);

    let run_id = RunId::generate();
    let target = |uid: &ClusterUid, name: &str| NewTarget {
        cluster_uid: Some(uid.to_string()),
        cluster_id: format!("id-{name}"),
        skipped: None,
    };
    let run = NewRun {
        id: run_id.clone(),
        scope: RunScope::new(format!("/subscriptions/{SUB}")),
        command: "true".into(),
        context: Vec::new(),
        cluster_token: None,
        max_concurrency: Limit::Count(1),
        max_errors: Limit::Count(0),
        created_at: 1,
        created_by: "app".into(),
        targets: vec![target(&again, "c1"), target(&second, "c2"), target(&second, "c2")],
        hold: None,
    };
    let runs = store.runs();
    runs.insert_run(run, &lease("a", 1)).await.unwrap();
    assert_eq!(runs.skip_pending(&run_id, Some(1), "RunCommandDisabled: now").await.unwrap(), 1);
    assert_eq!(runs.skip_pending(&run_id, Some(1), "again").await.unwrap(), 0, "only a pending target");
    let read = runs.get_run(&run_id, None, TargetWindow::All).await.unwrap().unwrap();
    let states: Vec<_> = read.targets.iter().map(|t| (t.state, t.reason.as_deref())).collect();
    assert_eq!(
        states,
        [
            (TargetState::Pending, None),
            (TargetState::Skipped, Some("RunCommandDisabled: now")),
            (TargetState::Pending, None)
        ]
    );
    assert!(!read.has_cluster_token);
    assert_eq!(runs.skip_pending(&run_id, None, "the rest").await.unwrap(), 2);
}

/// PostgreSQL only (SQLite has one writer at a time): the activity log never waits for a
/// command's row while another transaction writes it (the dispatcher storing its end, which
/// would otherwise wait in turn for the log's transaction); it leaves that command for a later
/// pass and logs it then.
#[tokio::test]
async fn postgres_logging_leaves_a_command_whose_row_is_being_written_for_a_later_pass() {
    let Some(s) = postgres().await else { return };
    let Backend::Postgres(database) = &s.backend else { unreachable!("postgres() gives a PostgreSQL subject") };
    let store = &*s.store;
    let uid = cluster(store, "rg", "k", json!({})).await;
    submit(store, &uid, "c1", 1).await;
    let rows = store.activity().unlogged_commands(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let batches = || {
        rows.iter()
            .map(|row: &CommandLogRow| CommandEvents {
                id: row.id.clone(),
                from: row.logged_state,
                to: row.state,
                events: vec![],
            })
            .collect::<Vec<_>>()
    };

    let writer = harness::postgres_client(&database.url()).await;
    writer.batch_execute("BEGIN; SELECT 1 FROM commands WHERE id = 'c1' FOR UPDATE").await.unwrap();
    let logging = store.activity().log_command_events(batches());
    tokio::time::timeout(std::time::Duration::from_secs(20), logging)
        .await
        .expect("the log waited for a row another transaction holds")
        .unwrap();
    assert_eq!(store.activity().unlogged_commands(10).await.unwrap().len(), 1, "left for a later pass");

    writer.batch_execute("COMMIT").await.unwrap();
    store.activity().log_command_events(batches()).await.unwrap();
    assert!(store.activity().unlogged_commands(10).await.unwrap().is_empty(), "logged once the row is free");
}
