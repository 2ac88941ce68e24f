//! The command use cases the API offers: submit, cancel, and where a command's live output is.
//! Handlers translate HTTP to these and back; the queue, the store and the running commands
//! are the dispatcher's business.

use std::sync::Arc;

use crate::approval::Hold;
use crate::command::{CommandId, CommandState};
use crate::fanout::RunRecord;
use crate::store::{ClusterUid, CommandOptions, Lease, NewCommand, StoreError, TargetStart};
use crate::time::now_millis;

use super::Dispatcher;
use super::queue::QueueFull;

/// A command to accept.
pub struct Submission {
    pub cluster_uid: ClusterUid,
    pub command: String,
    /// The validated context zip; empty when no files were attached.
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    /// Who submitted it (`appId (objectId)`).
    pub submitted_by: String,
    pub options: CommandOptions,
    /// Secret parameter values: kept in this server's memory only, so only this replica may run it.
    pub secrets: Vec<(String, String)>,
    /// Set when its cluster holds it for approval.
    pub hold: Option<Hold>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({} waiting)", .0.queued)]
    QueueFull(QueueFull),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a cancel went.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Canceled (queued), or asked to stop (running here or at another replica).
    Done,
    /// No such command in this cluster.
    NotFound,
    /// It had already ended, in this state.
    AlreadyFinished(CommandState),
}

impl Dispatcher {
    /// Stores a new command durably before the caller hears of it: `PendingApproval` when its
    /// cluster holds it (it takes no place in the queue and nothing runs), else `Running` at once
    /// when a worker here is idle and nothing is queued (one durable write: its claim is its
    /// insert), else `Accepted` if the queue has room, waking a worker.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<CommandId, SubmitError> {
        self.check_free_space()?;
        let id = CommandId::generate();
        let now = now_millis();
        let has_secrets = !submission.secrets.is_empty();
        let command = NewCommand {
            id: id.clone(),
            cluster_uid: submission.cluster_uid,
            command: submission.command,
            context: submission.context,
            cluster_token: submission.cluster_token,
            submitted_at: now,
            submitted_by: submission.submitted_by,
            options: submission.options,
            pinned: has_secrets.then(|| self.lease_from(now)),
            hold: submission.hold,
        };
        if has_secrets {
            self.secrets.insert(id.clone(), submission.secrets);
        }
        let stored = if command.hold.is_some() {
            // Waiting for approvers: stored, and in no queue until released.
            self.store.commands().insert_command(command).await.map_err(SubmitError::from)
        } else {
            match self.idle_worker() {
                Some(worker) => match self.store.commands().insert_running(command, &self.lease_from(now)).await {
                    Ok(claimed) => {
                        self.start_execution(claimed, worker);
                        Ok(())
                    }
                    Err(e) => Err(SubmitError::from(e)),
                },
                None => self.enqueue(command).await,
            }
        };
        if stored.is_err() {
            self.secrets.take(&id);
        }
        stored.map(|()| id)
    }

    /// Refuses a submission when the data directory (live output, working directories, and the
    /// SQLite database) is down to its reserve: a full disk is found before a command that could
    /// not keep its output is accepted, not after.
    fn check_free_space(&self) -> Result<(), SubmitError> {
        let Ok(stats) = rustix::fs::statvfs(&self.outputs_dir) else { return Ok(()) };
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        if free >= self.config.reserve_space {
            return Ok(());
        }
        tracing::warn!(
            free,
            reserve = self.config.reserve_space,
            "submission refused: the data directory is down to its reserve of free space"
        );
        Err(SubmitError::Store(StoreError::Full(anyhow::anyhow!(
            "{free} bytes free in the data directory, below its reserve of {}",
            self.config.reserve_space
        ))))
    }

    /// Stores a command `Accepted` for the claim loop, if the queue has room.
    async fn enqueue(&self, command: NewCommand) -> Result<(), SubmitError> {
        let slot = self.queue.reserve().map_err(SubmitError::QueueFull)?;
        self.store.commands().insert_command(command).await?;
        slot.commit();
        Ok(())
    }

    /// Cancels a command as `by`: a queued one at once, a running one through its stop switch
    /// here or its owner's next lease renewal elsewhere. Either ends `Canceled` naming `by`.
    pub async fn cancel_command(&self, cluster: &ClusterUid, id: &CommandId, by: &str) -> Result<Cancel, StoreError> {
        let now = now_millis();
        let Some(state) = self.store.commands().cancel_queued(cluster, id, by, now, self.expiry_from(now)).await?
        else {
            return Ok(Cancel::NotFound);
        };
        let done = match state {
            CommandState::Accepted => {
                self.queue.left();
                self.secrets.take(id);
                true
            }
            CommandState::PendingApproval => {
                self.secrets.take(id);
                true
            }
            CommandState::Running => {
                self.stop_execution(id, by) || self.store.commands().request_cancel(cluster, id, by).await?
            }
            _ => false,
        };
        if done {
            tracing::info!(command_id = %id, principal = %by, "command cancel requested");
            return Ok(Cancel::Done);
        }
        // It finished in between.
        let now_state = self.store.commands().get_command(cluster, id, now_millis()).await?.map_or(state, |c| c.state);
        Ok(Cancel::AlreadyFinished(now_state))
    }

    /// Starts one target of a fan-out run as an ordinary command, if its cluster still admits it
    /// (settings may have changed since the run was accepted: a cluster that now disables run
    /// command, or needs a token the run lacks, gets no command and its target is skipped), the
    /// queue has room and the run is still this replica's to drive.
    pub async fn start_run_target(
        &self,
        run: &RunRecord,
        position: i64,
        lease: &Lease,
    ) -> Result<TargetStart, SubmitError> {
        let target = run.targets.iter().find(|t| t.position == position);
        if let Some(uid) = target.and_then(|t| t.cluster_uid.clone()) {
            let cluster = self.store.clusters().cluster_by_uid(&ClusterUid::from_text(uid)).await?;
            if let Some(Err(refused)) = cluster.map(|c| super::admit_target(&c, run.has_cluster_token, run.approved()))
            {
                let reason = refused.skip_reason();
                let skipped = self.store.runs().skip_pending(&run.id, Some(position), &reason).await?;
                if skipped > 0 {
                    tracing::info!(run_id = %run.id, position, reason, "fan-out target not admitted any more: skipped");
                }
                return Ok(TargetStart::NotAdmitted);
            }
        }
        let slot = self.queue.reserve().map_err(SubmitError::QueueFull)?;
        let started = self.store.runs().start_target(&run.id, position, &CommandId::generate(), lease).await?;
        if started == TargetStart::Started {
            slot.commit();
        }
        Ok(started)
    }

    /// Where a command's full output is (or was) written, for live logs.
    pub fn output_path(&self, id: &CommandId) -> std::path::PathBuf {
        self.outputs_dir.join(format!("{id}.log"))
    }
}
