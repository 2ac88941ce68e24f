//! Fan-out: one command across many clusters (an extension under ARM's conventions).
//!
//! A *run* is stored with one *target* per selected cluster. Each target that may run gets an
//! ordinary command (its own `commandResults/{id}`), started by the run driver (`services::run_driver`) of whichever
//! replica holds the run's lease, at most `maxConcurrency` at a time, until more than
//! `maxErrors` targets have failed. The store decides every step (a target is started at most
//! once, in the same transaction that creates its command), so a restart or a second replica
//! never runs a target twice.

mod limit;

use serde::Serialize;

use crate::command::{CommandId, CommandState};

pub use limit::{Limit, LimitError};

/// A run's id: 32 lowercase hex characters, like a command's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    pub fn generate() -> Self {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn from_text(text: impl Into<String>) -> Self {
        RunId(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run lives: a subscription, or one resource group of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScope {
    /// The ARM id as the caller spelled it (`/subscriptions/{s}[/resourceGroups/{rg}]`).
    pub id: String,
    /// The same, lowercased: how runs are found (ARM ids compare case-insensitively).
    pub key: String,
}

impl RunScope {
    pub fn new(id: String) -> Self {
        let key = id.to_ascii_lowercase();
        RunScope { id, key }
    }

    pub fn run_id(&self, run: &RunId) -> String {
        format!("{}/providers/Microsoft.ContainerService/commandRuns/{run}", self.id)
    }
}

/// A run's lifecycle: `Accepted → Running → Succeeded | Failed | Canceled`; a run to clusters
/// that hold free-form commands for approval starts `PendingApproval`, approved once as a whole
/// before any target starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunState {
    /// Waiting for its approvers; no target starts.
    PendingApproval,
    Accepted,
    Running,
    /// Every target ran and exited 0.
    Succeeded,
    /// Some target failed, exited non-zero, or was skipped.
    Failed,
    Canceled,
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "PendingApproval",
            Self::Accepted => "Accepted",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::PendingApproval, Self::Accepted, Self::Running, Self::Succeeded, Self::Failed, Self::Canceled]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// Where one target stands. `Pending`, `Skipped` and `Canceled` (before it started) belong to the
/// target; once started, the state is its command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TargetState {
    Pending,
    Accepted,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Skipped,
}

impl TargetState {
    pub const ALL: [TargetState; 7] =
        [Self::Pending, Self::Accepted, Self::Running, Self::Succeeded, Self::Failed, Self::Canceled, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Accepted => "Accepted",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
            Self::Skipped => "Skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    fn of_command(state: CommandState) -> Self {
        match state {
            // A target's command is never held: a run is approved as a whole before it starts.
            CommandState::PendingApproval => Self::Pending,
            CommandState::Accepted => Self::Accepted,
            CommandState::Running => Self::Running,
            CommandState::Succeeded => Self::Succeeded,
            CommandState::Failed => Self::Failed,
            CommandState::Canceled => Self::Canceled,
        }
    }
}

/// Why a target was not run.
pub mod skip {
    /// The caller may not run commands on the cluster.
    pub const AUTHORIZATION_FAILED: &str = "AuthorizationFailed";
    /// More than `maxErrors` targets had failed.
    pub const MAX_ERRORS_REACHED: &str = "MaxErrorsReached";
    /// The cluster has `disableRunCommand` set.
    pub const RUN_COMMAND_DISABLED: &str = "RunCommandDisabled";
    /// The cluster is AAD-managed and the run carries no `clusterToken`.
    pub const CLUSTER_TOKEN_REQUIRED: &str = "ClusterTokenRequired";
    /// A listed cluster id names no cluster.
    pub const NOT_FOUND: &str = "ResourceNotFound";
    /// The cluster was deleted before its turn came.
    pub const CLUSTER_DELETED: &str = "ClusterDeleted";
    /// The cluster's stored settings cannot be used.
    pub const INVALID_CLUSTER_SETTING: &str = "InvalidClusterSetting";
    /// The cluster holds free-form commands for approval and the run was not approved.
    pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
    /// The run was not approved in time.
    pub const APPROVAL_EXPIRED: &str = "ApprovalExpired";
}

/// A cluster chosen for a run, as stored at submission.
#[derive(Debug, Clone)]
pub struct NewTarget {
    /// The cluster's internal uid; `None` for a listed id that names no cluster.
    pub cluster_uid: Option<String>,
    pub cluster_id: String,
    /// Set when the target will not run, with why (one of [`skip`]'s reasons and a message).
    pub skipped: Option<String>,
}

/// A run to store.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub scope: RunScope,
    pub command: String,
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    pub max_concurrency: Limit,
    pub max_errors: Limit,
    pub created_at: i64,
    /// `appId (objectId)`, as commands record it.
    pub created_by: String,
    pub targets: Vec<NewTarget>,
    /// Set when some target's cluster holds free-form commands: the run waits for approvers.
    pub hold: Option<crate::approval::Hold>,
}

impl NewRun {
    /// The state it is stored in: waiting for approvers when it has a hold.
    pub fn queued_state(&self) -> RunState {
        match self.hold {
            Some(_) => RunState::PendingApproval,
            None => RunState::Accepted,
        }
    }
}

/// One target as read back: its own state, or its command's.
#[derive(Debug, Clone)]
pub struct TargetRecord {
    pub position: i64,
    pub cluster_id: String,
    /// The cluster's internal uid (none for a listed id that named no cluster).
    pub cluster_uid: Option<String>,
    pub state: TargetState,
    pub command_id: Option<CommandId>,
    pub exit_code: Option<i32>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
}

impl TargetRecord {
    /// Started and not yet final.
    pub fn is_active(&self) -> bool {
        matches!(self.state, TargetState::Accepted | TargetState::Running)
    }

    /// Counts against `maxErrors`: the command failed, or ran and exited non-zero.
    pub fn is_error(&self) -> bool {
        match self.state {
            TargetState::Failed => true,
            TargetState::Succeeded => self.exit_code != Some(0),
            _ => false,
        }
    }

    /// Succeeded with exit code 0.
    pub fn is_clean(&self) -> bool {
        self.state == TargetState::Succeeded && self.exit_code == Some(0)
    }

    /// The state of a started target from its command, or what was kept of it when the command
    /// itself is gone (expired, or deleted with its cluster).
    pub fn started(command: Option<CommandState>) -> TargetState {
        command.map_or(TargetState::Failed, TargetState::of_command)
    }
}

/// A run as read back, with its targets in selection order.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub seq: i64,
    pub id: RunId,
    pub scope: String,
    pub state: RunState,
    pub command: String,
    pub max_concurrency: Limit,
    pub max_errors: Limit,
    pub created_at: i64,
    pub created_by: String,
    pub finished_at: Option<i64>,
    pub cancel_requested_by: Option<String>,
    /// Whether the run carries a `clusterToken` (its value never leaves the store but with a
    /// target's command): admission asks, for AAD-managed clusters.
    pub has_cluster_token: bool,
    /// Its targets: all of them, or one page (`TargetWindow` in the store).
    pub targets: Vec<TargetRecord>,
    /// When `targets` is one page: the count of all targets per state, and whether targets
    /// follow the page.
    pub paged: Option<TargetPageInfo>,
    /// What the run waited for, if some target's cluster held it.
    pub hold: Option<crate::approval::Hold>,
    /// When its last approver released it.
    pub approved_at: Option<i64>,
    /// The approvers' decisions, oldest first.
    pub decisions: Vec<crate::approval::Decision>,
}

/// What a run read with one page of its targets knows of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPageInfo {
    /// All targets per state, every state listed.
    pub counts: Vec<(TargetState, usize)>,
    /// Whether targets follow the page.
    pub more: bool,
}

/// Every state with how many of `states` are in it (zeros included), in [`TargetState::ALL`]'s order.
pub fn count_states(states: impl IntoIterator<Item = (TargetState, usize)>) -> Vec<(TargetState, usize)> {
    let mut counts: Vec<(TargetState, usize)> = TargetState::ALL.iter().map(|&state| (state, 0)).collect();
    for (state, n) in states {
        if let Some(count) = counts.iter_mut().find(|(s, _)| *s == state) {
            count.1 += n;
        }
    }
    counts
}

impl RunRecord {
    /// Targets per state, every state listed (zeros included) so clients need no defaults:
    /// of all targets, also when only a page of them was read.
    pub fn counts(&self) -> Vec<(TargetState, usize)> {
        match &self.paged {
            Some(page) => page.counts.clone(),
            None => count_states(self.targets.iter().map(|t| (t.state, 1))),
        }
    }

    /// Targets that may still run (not skipped at submission).
    fn runnable(&self) -> usize {
        self.targets.iter().filter(|t| t.state != TargetState::Skipped || t.command_id.is_some()).count()
    }

    pub fn concurrency(&self) -> usize {
        self.max_concurrency.of(self.runnable()).max(1)
    }

    pub fn error_budget(&self) -> usize {
        self.max_errors.of(self.runnable())
    }

    /// What the run ends as once nothing is pending or active.
    /// Approved as a whole: its targets may start on clusters that hold free-form commands.
    pub fn approved(&self) -> bool {
        self.approved_at.is_some()
    }

    pub fn final_state(&self) -> RunState {
        if self.cancel_requested_by.is_some() {
            RunState::Canceled
        } else if self.targets.iter().all(TargetRecord::is_clean) {
            RunState::Succeeded
        } else {
            RunState::Failed
        }
    }
}
