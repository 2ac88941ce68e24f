//! Commands in the store: the queue, the leases of the replicas that run them, and their results.
//!
//! Every state change is one of the guarded transitions of [`CommandState`], applied by SQL that
//! names the state it leaves (`WHERE state = 'Running'`), so a transition that lost a race
//! changes nothing.

mod postgres;
mod sqlite;
mod statements;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::rows::hold_columns;
use super::rows::{Columns, corrupt, json_map};
use super::{ClusterUid, StoreError, StoreResult};
use crate::approval::Hold;
use crate::cluster_settings::{ClusterSettings, InvalidSetting};
use crate::command::{CommandId, CommandRecord, CommandState, CommandSummary, Outcome};

#[derive(Debug, Clone)]
pub struct NewCommand {
    pub id: CommandId,
    pub cluster_uid: ClusterUid,
    pub command: String,
    /// The validated context zip; empty when no files were attached.
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    pub submitted_at: i64,
    /// Who submitted it (`appId (objectId)`), for the audit trail.
    pub submitted_by: String,
    pub options: CommandOptions,
    /// Set when only this replica may run it (it holds secret parameter values in memory): the
    /// command is written with this owner and lease, renewed like a running one, and ends
    /// `Failed` if the replica goes away before running it.
    pub pinned: Option<Lease>,
    /// Set when its cluster holds it for approval: it is stored `PendingApproval`, not `Accepted`.
    pub hold: Option<Hold>,
}

impl NewCommand {
    /// The state it is stored in when it is queued.
    fn queued_state(&self) -> CommandState {
        match self.hold {
            Some(_) => CommandState::PendingApproval,
            None => CommandState::Accepted,
        }
    }
}

/// What a command carries beyond its shell line (saved commands, per-request limits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Environment variables for the command (saved command parameters that are not secret).
    pub environment: Vec<(String, String)>,
    /// Names of secret parameters, whose values never reach the store.
    pub secret_names: Vec<String>,
    /// A timeout below the server's and the cluster's.
    pub timeout: Option<std::time::Duration>,
    /// The saved command it runs (its resource id).
    pub saved_command: Option<String>,
    /// The identity it acts as in the cluster (a saved command's `runAs`).
    pub run_as: Option<crate::run_as::RunAs>,
}

/// A command a worker now owns (`Running`), with everything it needs to execute.
#[derive(Debug, Clone)]
pub struct ClaimedCommand {
    pub id: CommandId,
    pub command: String,
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    pub kubeconfig: Option<Vec<u8>>,
    /// The cluster's settings as they are now; a stored value that cannot be used fails the
    /// command naming it.
    pub settings: Result<ClusterSettings, InvalidSetting>,
    pub submitted_by: String,
    pub options: CommandOptions,
}

impl ClaimedCommand {
    /// A command stored `Running` as it was submitted, with its cluster's kubeconfig and
    /// settings document as they are in the same transaction.
    fn submitted(command: NewCommand, kubeconfig: Option<Vec<u8>>, document: Option<&str>) -> Self {
        ClaimedCommand {
            id: command.id,
            command: command.command,
            context: command.context,
            cluster_token: command.cluster_token,
            kubeconfig,
            settings: settings_of(document),
            submitted_by: command.submitted_by,
            options: command.options,
        }
    }
}

/// Who is claiming work and for how long: a replica owns a `Running` command only while its
/// lease is renewed.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The replica's id (stable across its restarts).
    pub owner: String,
    pub now: i64,
    pub until: i64,
}

/// A cancel asked of a command that runs on another replica, picked up by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub id: CommandId,
    pub by: String,
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    /// Stores a new command `Accepted` (or `PendingApproval` when it has a hold).
    async fn insert_command(&self, command: NewCommand) -> StoreResult<()>;
    /// Stores a new command already `Running` under `lease` and hands it over as
    /// [`CommandStore::claim_next`] would: for a replica with an idle worker and nothing queued,
    /// one durable write instead of an insert and then a claim. The owner is `lease`'s (a
    /// command's `pinned` lease names the same replica).
    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand>;
    /// A command of this cluster that has not expired at `now`.
    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>>;
    /// Atomically moves the oldest `Accepted` command that is not pinned to another replica to
    /// `Running` under `lease` and hands it over; no two claims ever get the same command.
    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>>;
    /// Extends the lease of every command `owner` runs or holds pinned; returns cancels asked of
    /// them elsewhere.
    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>>;
    /// Ends `Failed`/`WorkerLost` every `Running` command (and pinned `Accepted` one) whose lease
    /// ran out; returns their ids.
    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>>;
    /// Asks the owner of a running command to cancel it; false when it is not running.
    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool>;
    /// Adds what really happened to a command that ended `WorkerLost` while `owner` ran it to its
    /// end (cut off from the database): `FailureReason::LostThenReported` and the output. The
    /// state stays `Failed`. False when the row is not such a command of `owner`'s.
    async fn report_after_lost(&self, id: &CommandId, owner: &str, exit_code: i32, logs: &str) -> StoreResult<bool>;
    /// Moves a `Running` command to its terminal state; false when it was not running
    /// (already finished, or deleted with its cluster).
    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool>;
    /// Cancels a command that no worker has claimed yet (`Accepted | PendingApproval → Canceled`). Returns the
    /// state it was in, or `None` when it does not exist (for this cluster).
    async fn cancel_queued(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<CommandState>>;
    /// A cluster's commands, newest first, older than `before` (a `seq`), at most `limit`.
    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>>;
    /// Ends `Failed`/`Interrupted` the `Running` commands of `owner` (and those of no owner), and
    /// `Failed`/`SecretsLost` the `Accepted` ones pinned to it: run when a replica starts, since
    /// nothing it ran or held in memory survived its restart.
    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64>;
    /// Deletes finished commands whose retention ended; returns their ids.
    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>>;
    async fn count_accepted(&self) -> StoreResult<usize>;
    /// Ids of every `Running` command (of every replica), for the sweeper.
    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>>;
}

/// A claimed command's cluster settings, from the cluster document's text as stored.
fn settings_of(document: Option<&str>) -> Result<ClusterSettings, InvalidSetting> {
    let Some(text) = document else { return Ok(ClusterSettings::default()) };
    let parsed: Map<String, Value> = serde_json::from_str(text).map_err(|e| InvalidSetting {
        property: "properties",
        message: format!("the stored cluster is unreadable: {e}"),
    })?;
    ClusterSettings::from_document(&parsed)
}

/// A row of [`statements::RECORD_COLUMNS`].
fn record(r: &impl Columns) -> Result<CommandRecord, StoreError> {
    let state = r.text("state")?;
    Ok(CommandRecord {
        id: CommandId::from_text(r.text("id")?),
        state: CommandState::parse(&state).ok_or_else(|| corrupt(format!("unknown stored state {state:?}")))?,
        submitted_at: r.int("submitted_at")?,
        started_at: r.opt_int("started_at")?,
        finished_at: r.opt_int("finished_at")?,
        exit_code: r.opt_int32("exit_code")?,
        logs: r.opt_text("logs")?,
        reason: r.opt_text("reason")?,
        expires_at: r.opt_int("expires_at")?,
    })
}

/// A row of the history's columns (a record without its logs, and what was asked).
fn summary(r: &impl Columns) -> Result<CommandSummary, StoreError> {
    let options = options(r, false)?;
    Ok(CommandSummary {
        seq: r.int("seq")?,
        record: record(r)?,
        command: r.text("command")?,
        submitted_by: r.text("submitted_by")?,
        saved_command: options.saved_command,
        parameters: options.environment,
        secret_names: options.secret_names,
        run_as: options.run_as,
    })
}

/// A claimed row of [`statements::CLAIM_COLUMNS`], with its cluster's kubeconfig and document.
fn claimed(
    r: &impl Columns,
    kubeconfig: Option<Vec<u8>>,
    document: Option<&str>,
) -> Result<ClaimedCommand, StoreError> {
    Ok(ClaimedCommand {
        id: CommandId::from_text(r.text("id")?),
        command: r.text("command")?,
        context: r.opt_bytes("context")?.unwrap_or_default(),
        cluster_token: r.opt_text("cluster_token")?,
        kubeconfig,
        settings: settings_of(document),
        submitted_by: r.text("submitted_by")?,
        options: options(r, true)?,
    })
}

/// A row's `id` column as a command id.
fn command_id(r: &impl Columns) -> Result<CommandId, StoreError> {
    Ok(CommandId::from_text(r.text("id")?))
}

/// A finished command's result columns: `(exit code, logs, reason)`.
fn outcome_columns(outcome: &Outcome) -> (Option<i32>, String, Option<String>) {
    match outcome {
        Outcome::Exited { exit_code, logs } => (Some(*exit_code), logs.clone(), None),
        Outcome::Failed { reason, logs } => (None, logs.clone(), Some(reason.as_reason())),
    }
}

/// The identity a command runs as, as its column keeps it (JSON).
fn run_as_column(options: &CommandOptions) -> Option<String> {
    options.run_as.as_ref().and_then(|r| serde_json::to_string(r).ok())
}

/// Command options as their columns hold them: `(environment JSON, secret names JSON, timeout ms)`.
fn option_columns(options: &CommandOptions) -> (Option<String>, Option<String>, Option<i64>) {
    let environment = (!options.environment.is_empty()).then(|| {
        Value::Object(options.environment.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
            .to_string()
    });
    let secrets = (!options.secret_names.is_empty()).then(|| Value::from(options.secret_names.clone()).to_string());
    let timeout = options.timeout.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
    (environment, secrets, timeout)
}

/// A command's parameters: plain ones with their values, and the names of secret ones.
type Parameters = (Vec<(String, String)>, Vec<String>);

/// A command's parameters from their columns.
pub(super) fn parameter_columns(r: &impl Columns) -> Result<Parameters, StoreError> {
    let environment = match r.opt_text("environment")? {
        Some(text) => {
            json_map(&text)?.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect()
        }
        None => Vec::new(),
    };
    let secret_names = match r.opt_text("secret_names")? {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| corrupt(format!("stored secret names are corrupt: {e}")))?
        }
        None => Vec::new(),
    };
    Ok((environment, secret_names))
}

/// The options of a claimed or listed command from its columns (the timeout only if `timeout`).
fn options(r: &impl Columns, timeout: bool) -> Result<CommandOptions, StoreError> {
    let (environment, secret_names) = parameter_columns(r)?;
    let timeout_ms = if timeout { r.opt_int("timeout_ms")? } else { None };
    let run_as = match r.opt_text("run_as")? {
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| corrupt(format!("a stored runAs is corrupt: {e}")))?)
        }
        None => None,
    };
    Ok(CommandOptions {
        run_as,
        environment,
        secret_names,
        timeout: timeout_ms.map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        saved_command: r.opt_text("saved_command")?,
    })
}

/// The column of a command's `runAs` (the same in both dialects).
pub(super) const RUN_AS_MIGRATION: &str = "ALTER TABLE commands ADD COLUMN run_as TEXT;";
