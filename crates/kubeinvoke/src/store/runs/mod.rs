//! Fan-out runs in the store: the run, one row per target, and the guarded steps the driver
//! takes. Both backends implement [`RunStore`]; the SQL differs only in dialect.
//!
//! A target is started by one transaction that checks the run's lease, creates the target's
//! command and records its id on the target: a target gets a command at most once, whichever
//! replica drives the run and however often it restarts.

mod postgres;
mod sqlite;

pub(super) use postgres::MIGRATION as POSTGRES_MIGRATION;
pub(super) use sqlite::MIGRATION as SQLITE_MIGRATION;

use async_trait::async_trait;

use super::rows::{Columns, corrupt};
use super::sql::Sql;
use super::{Lease, StoreError, StoreResult};
use crate::command::{CommandId, CommandState};
use crate::fanout::{Limit, NewRun, RunId, RunRecord, RunState, TargetRecord, TargetState};

/// How an attempt to start a target went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStart {
    /// Its command is stored as `Accepted`.
    Started,
    /// Its cluster was deleted meanwhile; the target is now `Skipped`.
    ClusterGone,
    /// Its cluster no longer admits the command (its settings changed since the run was
    /// accepted); the target is now `Skipped`, naming why.
    NotAdmitted,
    /// Not started: the lease is no longer this replica's, the run was canceled, or the target
    /// is not pending any more.
    Refused,
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a run with its targets, leased to `lease.owner` so its submitter drives it first.
    async fn insert_run(&self, run: NewRun, lease: &Lease) -> StoreResult<()>;
    /// A run with its targets (all, or a page with the counts of all); with `scope_key`, only if
    /// the run belongs to that scope.
    async fn get_run(
        &self,
        id: &RunId,
        scope_key: Option<&str>,
        window: TargetWindow,
    ) -> StoreResult<Option<RunRecord>>;
    /// Runs of a scope, newest first, older than `before` (a `seq`), at most `limit`, each with
    /// the first page of its targets (`targets` of them at most).
    async fn list_runs(
        &self,
        scope_key: &str,
        before: Option<i64>,
        limit: usize,
        targets: usize,
    ) -> StoreResult<Vec<RunRecord>>;
    /// Takes (or keeps) the lease of every unfinished run that is this owner's or whose lease ran
    /// out; returns their ids.
    async fn lease_runs(&self, lease: &Lease) -> StoreResult<Vec<RunId>>;
    /// Starts one pending target as `command`, if `lease` still holds the run.
    async fn start_target(
        &self,
        run: &RunId,
        position: i64,
        command: &CommandId,
        lease: &Lease,
    ) -> StoreResult<TargetStart>;
    /// Marks every pending target (or only the one at `position`) `Skipped` with `reason`;
    /// returns how many.
    async fn skip_pending(&self, run: &RunId, position: Option<i64>, reason: &str) -> StoreResult<u64>;
    /// Copies the end of each target whose command has ended into the target, so that reads of
    /// the run join only the commands still going; returns how many were settled.
    async fn settle_targets(&self, run: &RunId) -> StoreResult<u64>;
    /// Ends the run in `state`, keeping what its targets' commands showed (they expire sooner).
    async fn finish_run(&self, run: &RunId, state: RunState, now: i64) -> StoreResult<bool>;
    /// Asks an unfinished run to stop: pending targets end `Canceled` at once. Returns the run as
    /// it is now (`None` when it does not exist in the scope).
    async fn cancel_run(&self, id: &RunId, scope_key: &str, by: &str) -> StoreResult<Option<RunRecord>>;
    /// Deletes runs that finished before `finished_before`; returns how many.
    async fn purge_runs(&self, finished_before: i64) -> StoreResult<u64>;
}

/// Which of a run's targets a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetWindow {
    /// Every target: what the driver needs to decide.
    All,
    /// Those after position `after` (from the first when none), at most `limit`, with the
    /// counts of all: what a reader is shown, however many targets the run has.
    Page { after: Option<i64>, limit: usize },
}

impl TargetWindow {
    /// The first `limit` targets.
    pub fn first(limit: usize) -> Self {
        TargetWindow::Page { after: None, limit }
    }
}

/// The run columns [`run`] reads, in order.
const RUN_COLUMNS: &str = "seq, id, scope, state, command, max_concurrency, max_errors, created_at, created_by,
    finished_at, cancel_requested_by, (cluster_token IS NOT NULL) AS has_cluster_token, approvals_needed,
    approval_deadline, requester_oid, approved_at";

/// A target's own columns, then its command's: as kept in the target's row once the command
/// ended ([`SETTLE_TARGETS`]), else live from `commands`. The two halves keep a read of a large
/// run from joining every target with its command: only those still going are looked up.
macro_rules! target_select {
    ($filter:literal) => {
        concat!(
            "SELECT t.position, t.cluster_id, t.state, t.reason, t.command_id,
               t.final_state AS command_state, t.exit_code AS command_exit_code,
               t.started_at AS command_started_at, t.finished_at AS command_finished_at,
               t.final_reason AS command_reason, t.cluster_uid
             FROM command_run_targets t WHERE t.final_state IS NOT NULL AND ",
            $filter,
            " UNION ALL
             SELECT t.position, t.cluster_id, t.state, t.reason, t.command_id,
               c.state AS command_state, c.exit_code AS command_exit_code,
               c.started_at AS command_started_at, c.finished_at AS command_finished_at,
               c.reason AS command_reason, t.cluster_uid
             FROM command_run_targets t LEFT JOIN commands c ON c.id = t.command_id
             WHERE t.final_state IS NULL AND ",
            $filter
        )
    };
}
/// A run's targets, in selection order.
static TARGETS_OF_RUN: Sql = Sql::new(concat!(target_select!("t.run_id = $1"), " ORDER BY position"));
/// A page of a run's targets: after position `$2`, at most `$3`.
static TARGET_PAGE: Sql =
    Sql::new(concat!(target_select!("t.run_id = $1 AND t.position > $2"), " ORDER BY position LIMIT $3"));
/// Keeps the end of each target whose command has ended in the target's own row (a finished
/// command never changes again), so reads of the run look up only the commands still going.
static SETTLE_TARGETS: Sql = Sql::new(
    "UPDATE command_run_targets SET final_state = c.state, exit_code = c.exit_code,
            started_at = c.started_at, finished_at = c.finished_at, final_reason = c.reason
     FROM commands c
     WHERE command_run_targets.run_id = $1 AND command_run_targets.final_state IS NULL
       AND c.id = command_run_targets.command_id AND c.state IN ('Succeeded', 'Failed', 'Canceled')",
);
/// A run's targets counted by their own state and their command's ([`target_state`] of each).
static TARGET_COUNTS: Sql = Sql::new(
    "SELECT state, command_state, COUNT(*) AS n FROM (
       SELECT t.state, t.final_state AS command_state FROM command_run_targets t
       WHERE t.run_id = $1 AND t.final_state IS NOT NULL
       UNION ALL
       SELECT t.state, c.state AS command_state
       FROM command_run_targets t LEFT JOIN commands c ON c.id = t.command_id
       WHERE t.run_id = $1 AND t.final_state IS NULL
     ) AS targets GROUP BY state, command_state",
);

/// Pending targets of a run (`$3` one position, or NULL for all) become `Skipped` (`$2` why).
static SKIP_PENDING: Sql = Sql::new(
    "UPDATE command_run_targets SET state = 'Skipped', reason = $2
     WHERE run_id = $1 AND state = 'Pending' AND (CAST($3 AS BIGINT) IS NULL OR position = $3)",
);

/// The target's own state once its command exists.
const STARTED: &str = "Started";

fn run(r: &impl Columns) -> Result<RunRecord, StoreError> {
    let limit = |column: &str| -> Result<Limit, StoreError> {
        let text = r.text(column)?;
        Limit::parse(&text).ok_or_else(|| corrupt(format!("unknown stored limit {text:?}")))
    };
    let state = r.text("state")?;
    Ok(RunRecord {
        seq: r.int("seq")?,
        id: RunId::from_text(r.text("id")?),
        scope: r.text("scope")?,
        state: RunState::parse(&state).ok_or_else(|| corrupt(format!("unknown stored run state {state:?}")))?,
        command: r.text("command")?,
        max_concurrency: limit("max_concurrency")?,
        max_errors: limit("max_errors")?,
        created_at: r.int("created_at")?,
        created_by: r.text("created_by")?,
        finished_at: r.opt_int("finished_at")?,
        cancel_requested_by: r.opt_text("cancel_requested_by")?,
        has_cluster_token: r.boolean("has_cluster_token")?,
        targets: Vec::new(),
        paged: None,
        hold: super::approvals::hold(r)?,
        approved_at: r.opt_int("approved_at")?,
        decisions: Vec::new(),
    })
}

/// A target's state from its own (`state`) and, once started, its command's (`command_state`).
fn target_state(r: &impl Columns) -> Result<TargetState, StoreError> {
    let own = r.text("state")?;
    if own == STARTED {
        let command = r.opt_text("command_state")?;
        Ok(TargetRecord::started(command.as_deref().and_then(CommandState::parse)))
    } else {
        TargetState::parse(&own).ok_or_else(|| corrupt(format!("unknown stored target state {own:?}")))
    }
}

/// A row of [`TARGET_COUNTS`].
fn target_count(r: &impl Columns) -> Result<(TargetState, usize), StoreError> {
    let n = r.int("n")?;
    Ok((target_state(r)?, usize::try_from(n).map_err(|_| corrupt(format!("a count of {n} targets")))?))
}

/// The page read (`limit + 1` rows asked, so whether more follow is known) and the counts of
/// all targets, as the run carries them.
fn page_of(
    mut targets: Vec<TargetRecord>,
    limit: usize,
    counts: Vec<(TargetState, usize)>,
) -> (Vec<TargetRecord>, Option<crate::fanout::TargetPageInfo>) {
    let more = targets.len() > limit;
    targets.truncate(limit);
    (targets, Some(crate::fanout::TargetPageInfo { counts: crate::fanout::count_states(counts), more }))
}

fn target(r: &impl Columns) -> Result<TargetRecord, StoreError> {
    let state = target_state(r)?;
    let started = r.text("state")? == STARTED;
    Ok(TargetRecord {
        position: r.int("position")?,
        cluster_id: r.text("cluster_id")?,
        cluster_uid: r.opt_text("cluster_uid")?,
        state,
        command_id: r.opt_text("command_id")?.map(CommandId::from_text),
        exit_code: if started { r.opt_int32("command_exit_code")? } else { None },
        started_at: if started { r.opt_int("command_started_at")? } else { None },
        finished_at: if started { r.opt_int("command_finished_at")? } else { None },
        reason: if started { r.opt_text("command_reason")? } else { r.opt_text("reason")? },
    })
}

/// The reason a target gets when its cluster is gone before its turn.
fn cluster_deleted() -> String {
    format!("{}: the cluster was deleted before its turn came", crate::fanout::skip::CLUSTER_DELETED)
}

// The statements both dialects share (PostgreSQL's `$n`; SQLite reads them as `?n`).

/// `$13` its state, `$14`–`$16` its hold when it waits for approval.
static INSERT_RUN: Sql = Sql::new(
    "INSERT INTO command_runs (id, scope_key, scope, state, command, context, cluster_token,
                 max_concurrency, max_errors, created_at, created_by, owner, lease_until,
                 approvals_needed, approval_deadline, requester_oid)
             VALUES ($1, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16)",
);
static INSERT_TARGET: Sql = Sql::new(
    "INSERT INTO command_run_targets (run_id, position, cluster_uid, cluster_id, state, reason)
                 VALUES ($1, $2, $3, $4, $5, $6)",
);
static RUN_IDS_OF_SCOPE: Sql =
    Sql::new("SELECT id FROM command_runs WHERE scope_key = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
static LEASE_RUNS: Sql = Sql::new(
    "UPDATE command_runs SET owner = $1, lease_until = $3
                 WHERE state IN ('PendingApproval', 'Accepted', 'Running') AND (owner = $1 OR owner IS NULL OR lease_until < $2)
                 RETURNING id",
);
static SKIP_DELETED_TARGET: Sql =
    Sql::new("UPDATE command_run_targets SET state = 'Skipped', reason = $3 WHERE run_id = $1 AND position = $2");
static START_TARGET_COMMAND: Sql =
    Sql::new("UPDATE command_run_targets SET state = $4, command_id = $3 WHERE run_id = $1 AND position = $2");
static RUN_STARTED: Sql = Sql::new("UPDATE command_runs SET state = 'Running' WHERE id = $1 AND state = 'Accepted'");
static FINISH_RUN: Sql = Sql::new(
    "UPDATE command_runs SET state = $2, finished_at = $3, context = NULL, cluster_token = NULL,
                        owner = NULL, lease_until = NULL
                 WHERE id = $1 AND state IN ('PendingApproval', 'Accepted', 'Running')",
);
static REQUEST_RUN_CANCEL: Sql = Sql::new(
    "UPDATE command_runs SET cancel_requested_by = COALESCE(cancel_requested_by, $3)
                 WHERE id = $1 AND scope_key = $2 AND state IN ('PendingApproval', 'Accepted', 'Running')",
);
static CANCEL_PENDING_TARGETS: Sql =
    Sql::new("UPDATE command_run_targets SET state = 'Canceled', reason = $2 WHERE run_id = $1 AND state = 'Pending'");
static PURGE_RUNS: Sql = Sql::new("DELETE FROM command_runs WHERE finished_at IS NOT NULL AND finished_at < $1");
