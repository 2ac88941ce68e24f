//! Held commands in the store: what waits for approvers, the decisions given, and the guarded
//! steps out of `PendingApproval` (approved into the queue, rejected, expired).
//!
//! A decision is one transaction that reads the command's hold under the writer's lock (SQLite's
//! one writer; `FOR UPDATE` on PostgreSQL), so two approvers on two replicas are counted one
//! after the other and a command is released to the queue exactly once.

mod postgres;
mod sqlite;

use async_trait::async_trait;

use super::rows::{Columns, corrupt};
use super::sql::Sql;
use super::{ClusterUid, StoreError, StoreResult};
use crate::approval::{Decision, Hold, Verdict};
use crate::command::{CommandId, CommandState};
use crate::fanout::RunId;

/// A command that was held for approval, with what an approver needs to decide on it.
#[derive(Debug, Clone)]
pub struct HeldCommand {
    pub id: CommandId,
    pub cluster_uid: ClusterUid,
    /// The cluster's subscription, resource group and name, as the ARM id spells them.
    pub subscription: String,
    pub group: String,
    pub cluster: String,
    pub state: CommandState,
    pub command: String,
    /// The requester, `appId (objectId)`.
    pub submitted_by: String,
    pub submitted_at: i64,
    pub hold: Hold,
    /// Every decision given so far, oldest first.
    pub decisions: Vec<Decision>,
    /// The saved command it runs, its plain parameters and the names of its secret ones.
    pub saved_command: Option<String>,
    pub parameters: Vec<(String, String)>,
    pub secret_names: Vec<String>,
    /// The size of the attached zip (none once the command no longer needs it).
    pub context_bytes: Option<i64>,
}

/// How a decision went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// No such command in this cluster.
    NotFound,
    /// It does not wait for approval (never held, or decided already): its state now.
    NotPending(&'static str),
    /// Its time ran out before this decision: it is now `Failed`/`ApprovalExpired`.
    Expired,
    /// The approver is its requester, who may never approve their own command.
    OwnCommand,
    /// This approver approved it before; an approver counts once.
    AlreadyApproved,
    /// Counted; more approvals are needed.
    Counted { approvals: u8, needed: u8 },
    /// The last approval needed: it is `Accepted`, in the queue.
    Released,
    /// Rejected: it is `Canceled`, naming the approver and their reason.
    Rejected,
}

#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Commands waiting for approval at `now` on every cluster, oldest first, at most `limit`.
    async fn pending_approvals(&self, now: i64, limit: usize) -> StoreResult<Vec<HeldCommand>>;
    /// A command of this cluster that was held, in whatever state it is now.
    async fn held_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<HeldCommand>>;
    /// The attached zip of a held command, while the command still keeps it.
    async fn held_context(&self, cluster_uid: &ClusterUid, id: &CommandId, now: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Records `decision` on a command waiting for approval; `expires_at` is when a result it
    /// ends now (rejected, expired) stops being readable.
    async fn decide(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        decision: &Decision,
        expires_at: i64,
    ) -> StoreResult<Decided>;
    /// Ends `Failed`/`ApprovalExpired` every command whose approval deadline passed; their ids.
    async fn expire_approvals(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>>;
    /// Records `decision` on a fan-out run of `scope_key` waiting for approval, as a whole: the
    /// last approval needed lets its targets start (`Accepted`); a rejection cancels its pending
    /// targets, naming the approver and why.
    async fn decide_run(&self, run: &RunId, scope_key: &str, decision: &Decision) -> StoreResult<Decided>;
    /// A run whose approval deadline passed at `now`: its pending targets are skipped
    /// (`ApprovalExpired`), so it ends `Failed`. False when it no longer waits.
    async fn expire_run(&self, run: &RunId, now: i64) -> StoreResult<bool>;
}

/// The statements on one kind of held work's decisions, written once for commands and runs:
/// `$decisions` the decisions' table, `$key` its column naming the work, `$work` the work's table.
macro_rules! decision_statements {
    ($decisions:literal, $key:literal, $work:literal) => {
        Decisions {
            add_approval: Sql::new(concat!(
                "INSERT INTO ",
                $decisions,
                " (",
                $key,
                ", approver_oid, approver, verdict, reason, decided_at)
                 VALUES ($1, $2, $3, 'Approved', $4, $5) ON CONFLICT (",
                $key,
                ", approver_oid) DO NOTHING"
            )),
            add_rejection: Sql::new(concat!(
                "INSERT INTO ",
                $decisions,
                " (",
                $key,
                ", approver_oid, approver, verdict, reason, decided_at)
                 VALUES ($1, $2, $3, 'Rejected', $4, $5)
                 ON CONFLICT (",
                $key,
                ", approver_oid) DO UPDATE SET verdict = 'Rejected', reason = $4, decided_at = $5"
            )),
            count: Sql::new(concat!(
                "SELECT COUNT(*) AS approvals FROM ",
                $decisions,
                " WHERE ",
                $key,
                " = $1 AND verdict = 'Approved'"
            )),
            release: Sql::new(concat!(
                "UPDATE ",
                $work,
                " SET state = 'Accepted', approved_at = $2 WHERE id = $1 AND state = 'PendingApproval'"
            )),
            list: Sql::new(concat!(
                "SELECT approver_oid, approver, verdict, reason, decided_at FROM ",
                $decisions,
                " WHERE ",
                $key,
                " = $1 ORDER BY decided_at, approver_oid"
            )),
        }
    };
}

/// The statements on the decisions of one kind of held work, a command or a run.
pub(super) struct Decisions {
    /// Records an approval, once per approver (`$1` the work, `$2`–`$5` who, why, when).
    add_approval: Sql,
    /// Records a rejection, replacing an earlier approval of the same approver.
    add_rejection: Sql,
    count: Sql,
    /// `PendingApproval → Accepted` once enough approved (`$1` the work, `$2` when).
    release: Sql,
    /// Every decision on one work (`$1`), oldest first.
    pub(super) list: Sql,
}
static COMMAND_DECISIONS: Decisions = decision_statements!("approvals", "command_id", "commands");
pub(super) static RUN_DECISIONS: Decisions = decision_statements!("run_approvals", "run_id", "command_runs");

/// What a run's approval is read with, under the row's lock on PostgreSQL.
macro_rules! run_hold_state {
    () => {
        "SELECT state, approvals_needed, approval_deadline, requester_oid, cancel_requested_by FROM command_runs
         WHERE id = $1 AND scope_key = $2"
    };
}
static RUN_HOLD_STATE: Sql = Sql::new(run_hold_state!());
const RUN_HOLD_STATE_FOR_UPDATE_POSTGRES: &str = concat!(run_hold_state!(), " FOR UPDATE");
/// A rejected run is canceled by its approver (`$2` the reason); the driver ends it `Canceled`.
static REJECT_RUN: Sql =
    Sql::new("UPDATE command_runs SET cancel_requested_by = $2 WHERE id = $1 AND state = 'PendingApproval'");
static REJECT_RUN_TARGETS: Sql =
    Sql::new("UPDATE command_run_targets SET state = 'Canceled', reason = $2 WHERE run_id = $1 AND state = 'Pending'");
/// A run past its deadline (`$3` now): its pending targets are skipped (`$2` why).
static EXPIRE_RUN_TARGETS: Sql = Sql::new(
    "UPDATE command_run_targets SET state = 'Skipped', reason = $2
     WHERE run_id = $1 AND state = 'Pending'
       AND EXISTS (SELECT 1 FROM command_runs r WHERE r.id = $1 AND r.state = 'PendingApproval'
                   AND r.approval_deadline <= $3)",
);

/// The columns of [`held`]: the command, its hold and its cluster's names.
macro_rules! held_columns {
    () => {
        "SELECT c.id, c.cluster_uid, c.state, c.command, c.submitted_by, c.submitted_at, c.approvals_needed,
                c.approval_deadline, c.requester_oid, c.environment, c.secret_names, c.saved_command,
                CAST(LENGTH(c.context) AS BIGINT) AS context_bytes,
                cl.subscription_id, g.name AS group_name, cl.name AS cluster_name
         FROM commands c JOIN clusters cl ON cl.uid = c.cluster_uid
         JOIN resource_groups g ON g.subscription_id = cl.subscription_id AND g.name_key = cl.group_key"
    };
}

static PENDING: Sql = Sql::new(concat!(
    held_columns!(),
    " WHERE c.state = 'PendingApproval' AND c.approval_deadline > $1 ORDER BY c.seq LIMIT $2"
));
static HELD: Sql = Sql::new(concat!(
    held_columns!(),
    " WHERE c.id = $1 AND c.cluster_uid = $2 AND c.approvals_needed IS NOT NULL
        AND (c.expires_at IS NULL OR c.expires_at > $3)"
));
static CONTEXT: Sql = Sql::new(
    "SELECT context FROM commands WHERE id = $1 AND cluster_uid = $2 AND approvals_needed IS NOT NULL
       AND (expires_at IS NULL OR expires_at > $3)",
);
macro_rules! hold_state {
    () => {
        "SELECT state, approvals_needed, approval_deadline, requester_oid FROM commands
         WHERE id = $1 AND cluster_uid = $2 AND (expires_at IS NULL OR expires_at > $3)"
    };
}
static HOLD_STATE: Sql = Sql::new(hold_state!());
/// As [`HOLD_STATE`], locking the row: decisions on it are counted one after the other.
const HOLD_STATE_FOR_UPDATE_POSTGRES: &str = concat!(hold_state!(), " FOR UPDATE");
/// `PendingApproval → Canceled` (`$3` the reason naming who and why).
static REJECT: Sql = Sql::new(
    "UPDATE commands SET state = 'Canceled', finished_at = $2, reason = $3, logs = '', expires_at = $4,
            context = NULL, cluster_token = NULL
     WHERE id = $1 AND state = 'PendingApproval'",
);
/// `PendingApproval → Failed` for every command whose deadline passed (`$2` the reason).
static EXPIRE: Sql = Sql::new(
    "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, logs = '', expires_at = $3,
            context = NULL, cluster_token = NULL
     WHERE state = 'PendingApproval' AND approval_deadline <= $1
     RETURNING id",
);

/// What an approval counted decides: released once `approvals` reach what `hold` needs.
fn counted(approvals: i64, hold: Option<&Hold>) -> Decided {
    let needed = hold.map_or(1, |h| h.needed);
    if approvals >= i64::from(needed) {
        Decided::Released
    } else {
        Decided::Counted { approvals: u8::try_from(approvals).unwrap_or(u8::MAX), needed }
    }
}

/// The schema both dialects share but for their integer type.
macro_rules! migration {
    ($int:literal) => {
        concat!(
            "ALTER TABLE commands ADD COLUMN approvals_needed ",
            $int,
            ";
             ALTER TABLE commands ADD COLUMN approval_deadline ",
            $int,
            ";
             ALTER TABLE commands ADD COLUMN requester_oid TEXT;
             ALTER TABLE commands ADD COLUMN approved_at ",
            $int,
            ";
             CREATE INDEX commands_pending_approval ON commands (approval_deadline) WHERE state = 'PendingApproval';
             CREATE TABLE approvals (
                 command_id   TEXT NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
                 approver_oid TEXT NOT NULL,
                 approver     TEXT NOT NULL,
                 verdict      TEXT NOT NULL,
                 reason       TEXT NOT NULL,
                 decided_at   ",
            $int,
            " NOT NULL,
                 PRIMARY KEY (command_id, approver_oid)
             );
             ALTER TABLE command_runs ADD COLUMN approvals_needed ",
            $int,
            ";
             ALTER TABLE command_runs ADD COLUMN approval_deadline ",
            $int,
            ";
             ALTER TABLE command_runs ADD COLUMN requester_oid TEXT;
             ALTER TABLE command_runs ADD COLUMN approved_at ",
            $int,
            ";
             CREATE TABLE run_approvals (
                 run_id       TEXT NOT NULL REFERENCES command_runs (id) ON DELETE CASCADE,
                 approver_oid TEXT NOT NULL,
                 approver     TEXT NOT NULL,
                 verdict      TEXT NOT NULL,
                 reason       TEXT NOT NULL,
                 decided_at   ",
            $int,
            " NOT NULL,
                 PRIMARY KEY (run_id, approver_oid)
             );"
        )
    };
}
pub(super) const SQLITE_MIGRATION: &str = migration!("INTEGER");
pub(super) const POSTGRES_MIGRATION: &str = migration!("BIGINT");

/// A row of [`held_columns`], its decisions read apart.
fn held(r: &impl Columns) -> Result<HeldCommand, StoreError> {
    let state = r.text("state")?;
    let (environment, secret_names) = super::commands::parameter_columns(r)?;
    Ok(HeldCommand {
        id: CommandId::from_text(r.text("id")?),
        cluster_uid: ClusterUid::from_text(r.text("cluster_uid")?),
        subscription: r.text("subscription_id")?,
        group: r.text("group_name")?,
        cluster: r.text("cluster_name")?,
        state: CommandState::parse(&state).ok_or_else(|| corrupt(format!("unknown stored state {state:?}")))?,
        command: r.text("command")?,
        submitted_by: r.text("submitted_by")?,
        submitted_at: r.int("submitted_at")?,
        hold: hold(r)?.ok_or_else(|| corrupt("a held command without its hold".into()))?,
        decisions: Vec::new(),
        saved_command: r.opt_text("saved_command")?,
        parameters: environment,
        secret_names,
        context_bytes: r.opt_int("context_bytes")?,
    })
}

/// The hold columns of a row, if it was held.
pub(super) fn hold(r: &impl Columns) -> Result<Option<Hold>, StoreError> {
    let Some(needed) = r.opt_int("approvals_needed")? else { return Ok(None) };
    Ok(Some(Hold {
        needed: u8::try_from(needed).map_err(|_| corrupt(format!("stored approvals needed {needed}")))?,
        deadline: r.opt_int("approval_deadline")?.unwrap_or(0),
        requester: r.opt_text("requester_oid")?.unwrap_or_default(),
    }))
}

pub(super) fn decision(r: &impl Columns) -> Result<Decision, StoreError> {
    let verdict = r.text("verdict")?;
    Ok(Decision {
        verdict: Verdict::parse(&verdict).ok_or_else(|| corrupt(format!("unknown stored verdict {verdict:?}")))?,
        approver_oid: r.text("approver_oid")?,
        approver: r.text("approver")?,
        reason: r.text("reason")?,
        at: r.int("decided_at")?,
    })
}

/// What a decision does to a command in `state` with `hold` (read under the row's lock), before
/// anything is written: `Err` is the answer when nothing is to be written.
fn admissible(state: &'static str, hold: Option<&Hold>, decision: &Decision) -> Result<(), Decided> {
    let Some(hold) = hold.filter(|_| state == CommandState::PendingApproval.as_str()) else {
        return Err(Decided::NotPending(state));
    };
    if hold.deadline <= decision.at {
        return Err(Decided::Expired);
    }
    if decision.verdict == Verdict::Approve && hold.requester == decision.approver_oid {
        return Err(Decided::OwnCommand);
    }
    Ok(())
}

/// The state of a run's row, as the label a refusal names: a run being canceled no longer waits.
fn run_state(r: &impl Columns) -> Result<&'static str, StoreError> {
    if r.opt_text("cancel_requested_by")?.is_some() {
        return Ok(crate::fanout::RunState::Canceled.as_str());
    }
    let text = r.text("state")?;
    crate::fanout::RunState::parse(&text)
        .map(|s| s.as_str())
        .ok_or_else(|| corrupt(format!("unknown stored run state {text:?}")))
}

/// The stored state of a command, as the label a refusal names.
fn command_state(text: &str) -> Result<&'static str, StoreError> {
    CommandState::parse(text).map(|s| s.as_str()).ok_or_else(|| corrupt(format!("unknown stored state {text:?}")))
}

/// Why a run's targets are skipped when nobody approved it in time.
fn run_expiry_reason() -> String {
    format!(
        "{}: the run was not approved by enough approvers within the clusters' commandApproval.expiresAfter",
        crate::fanout::skip::APPROVAL_EXPIRED
    )
}

/// The reason a rejected command ends with.
fn rejection_reason(decision: &Decision) -> String {
    crate::command::FailureReason::Rejected { by: decision.approver.clone(), reason: decision.reason.clone() }
        .as_reason()
}
