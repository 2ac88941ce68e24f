//! The command domain: ids, states, legal transitions and how a run ended.

use serde::Serialize;

/// A command's lifecycle. Transitions are `Accepted → Running → Succeeded | Failed | Canceled`
/// and `Accepted → Canceled`, and for a command its cluster holds for approval
/// `PendingApproval → Accepted` (approved), `→ Canceled` (rejected, or canceled by its
/// requester) or `→ Failed` (`ApprovalExpired`), as [`CommandState::can_become`] states them. The store applies each
/// by SQL guarded on the state it leaves (`WHERE state = 'Running'`); the store contract tests
/// (`tests/store`) pin that no other transition happens on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum CommandState {
    /// Held until enough approvers said yes (`properties.commandApproval`): nothing runs and it
    /// takes no place in the queue.
    PendingApproval,
    Accepted,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl CommandState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    pub fn can_become(self, next: CommandState) -> bool {
        use CommandState::*;
        matches!(
            (self, next),
            (PendingApproval, Accepted | Canceled | Failed)
                | (Accepted, Running | Canceled)
                | (Running, Succeeded | Failed | Canceled)
        )
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

/// A command's id: 32 lowercase hex characters, as the spec's example and az's `--no-wait`
/// expect. A type of its own so it cannot be swapped with a cluster uid or a principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CommandId(String);

impl CommandId {
    pub fn generate() -> Self {
        CommandId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// An id the store or a client gave; ids are opaque beyond their text.
    pub fn from_text(text: impl Into<String>) -> Self {
        CommandId(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for CommandId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a command ended `Failed`; the text is the result's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The command ran longer than its timeout and was killed.
    Timeout,
    /// The server stopped while the command was running.
    Interrupted,
    /// The working directory grew past its size limit and the command was killed.
    WorkingDirectoryLimit,
    /// The server's data directory filled up while it ran, so its output could not be kept.
    DataDirectoryFull,
    /// The server shut down and the command did not finish within the grace period.
    ServerShutdown,
    /// The replica running it stopped renewing its lease (it died or lost the database).
    WorkerLost,
    /// Called lost (`WorkerLost`) while its replica, cut off from the database, saw it exit with
    /// this code; the replica told the store once it could. The state stays `Failed`: another
    /// replica had already said so, and an ended command stays ended.
    LostThenReported { exit_code: i32 },
    /// Someone canceled it (their app id); the command ends `Canceled`, not `Failed`.
    Canceled(String),
    /// An approver said no (`appId (objectId)` and their reason); it ends `Canceled`.
    Rejected { by: String, reason: String },
    /// Not approved by enough approvers within the cluster's `commandApproval.expiresAfter`.
    ApprovalExpired,
    /// The command could not be started (working directory, spawn, context extraction).
    StartFailed(String),
    /// The command's process ended but its exit status could not be read.
    StatusUnknown(String),
    /// Its secret parameters lived only in the memory of a server that stopped before running it.
    SecretsLost,
    /// A per-cluster setting could not be used (the setting and why).
    InvalidClusterSetting(String),
    /// The target cluster ended its Pod (`ImagePullBackoff`, `Unschedulable: …`, `Evicted: …`).
    Cluster(String),
    /// The server's own code (or a library's) failed while running it: a panic, caught and logged.
    Internal,
}

impl FailureReason {
    pub fn as_reason(&self) -> String {
        match self {
            Self::Timeout => "Timeout".into(),
            Self::Interrupted => "Interrupted".into(),
            Self::WorkingDirectoryLimit => "WorkingDirectoryLimit".into(),
            Self::ServerShutdown => "ServerShutdown".into(),
            Self::DataDirectoryFull => "DataDirectoryFull: the server's data directory ran out of space while the \
                                       command ran, so its output could not be kept; it was killed"
                .into(),
            Self::WorkerLost => "WorkerLost".into(),
            Self::LostThenReported { exit_code } => format!(
                "WorkerLost: the replica running it lost the database, so another replica called it lost; once the \
                 database was back, that replica reported the command had run to its end with exit code {exit_code} \
                 (its output is kept)"
            ),
            Self::SecretsLost => "SecretsLost: the server that accepted it stopped before running it, and its secret \
                                  parameters lived only in that server's memory; submit it again"
                .into(),
            Self::Canceled(by) => format!("Canceled by {by}"),
            Self::Rejected { by, reason } => format!("Rejected by {by}: {reason}"),
            Self::ApprovalExpired => "ApprovalExpired: not approved by enough approvers within the cluster's \
                                      commandApproval.expiresAfter; it never ran"
                .into(),
            Self::StartFailed(detail) => format!("StartFailed: {detail}"),
            Self::StatusUnknown(detail) => format!("StatusUnknown: {detail}"),
            Self::InvalidClusterSetting(detail) => format!("InvalidClusterSetting: {detail}"),
            Self::Cluster(reason) => reason.clone(),
            Self::Internal => {
                "InternalError: the server failed while running the command (the server's log has the details)".into()
            }
        }
    }
}

/// How an execution ended, as the executor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran to its end; a non-zero exit code is still a success of the run.
    Exited {
        exit_code: i32,
        logs: String,
    },
    Failed {
        reason: FailureReason,
        logs: String,
    },
}

impl Outcome {
    pub fn state(&self) -> CommandState {
        match self {
            Outcome::Exited { .. } => CommandState::Succeeded,
            Outcome::Failed { reason: FailureReason::Canceled(_) | FailureReason::Rejected { .. }, .. } => {
                CommandState::Canceled
            }
            Outcome::Failed { .. } => CommandState::Failed,
        }
    }
}

/// A command as the history lists it: the result plus what ran, who ran it and when.
#[derive(Debug, Clone)]
pub struct CommandSummary {
    /// Position in submission order (the history's paging key).
    pub seq: i64,
    pub record: CommandRecord,
    pub command: String,
    pub submitted_by: String,
    /// The saved command it ran, if any.
    pub saved_command: Option<String>,
    /// Its parameters: values of plain ones, and the names of secret ones (never their values).
    pub parameters: Vec<(String, String)>,
    pub secret_names: Vec<String>,
    /// The identity it acted as in the cluster (a saved command's `runAs`).
    pub run_as: Option<crate::run_as::RunAs>,
}

/// A command as stored.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub id: CommandId,
    pub state: CommandState,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub logs: Option<String>,
    pub reason: Option<String>,
    /// When a finished result stops being readable (Unix ms); none while it runs.
    pub expires_at: Option<i64>,
}

impl CommandRecord {
    /// Called lost and not (yet) told otherwise: the replica that ran it may still add what it
    /// saw (`FailureReason::LostThenReported`), so this final result is not final in every word.
    pub fn may_gain_a_late_report(&self) -> bool {
        self.state == CommandState::Failed && self.reason.as_deref() == Some("WorkerLost")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_transitions_are_legal() {
        use CommandState::*;
        assert!(Accepted.can_become(Running));
        assert!(Accepted.can_become(Canceled));
        assert!(Running.can_become(Failed));
        assert!(!Accepted.can_become(Succeeded));
        assert!(!Succeeded.can_become(Running));
        assert!(!Failed.can_become(Failed));
        assert!(PendingApproval.can_become(Accepted) && PendingApproval.can_become(Canceled));
        assert!(PendingApproval.can_become(Failed), "an approval that expires");
        assert!(!PendingApproval.can_become(Running), "an approval always passes through the queue");
        assert!(!Accepted.can_become(PendingApproval));
    }

    #[test]
    fn ids_are_32_lowercase_hex() {
        let id = CommandId::generate().to_string();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
}
