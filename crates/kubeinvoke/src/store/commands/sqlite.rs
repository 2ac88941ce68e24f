//! [`CommandStore`] on SQLite: the one writer serialises every transition, so a check inside a
//! transaction holds until it commits.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::statements::*;
use super::*;
use crate::command::FailureReason;
use crate::store::sqlite::{SqliteStore, backend, optional_record, records};

/// Writes a new command's row in `state`; `owner` is the lease of the replica that runs it (or
/// holds it pinned).
fn insert(
    conn: &Connection,
    command: &NewCommand,
    state: CommandState,
    started_at: Option<i64>,
    owner: Option<&Lease>,
) -> StoreResult<()> {
    let (environment, secrets, timeout_ms) = option_columns(&command.options);
    let (needed, deadline, requester) = hold_columns(command.hold.as_ref());
    conn.prepare_cached(INSERT.sqlite())
        .and_then(|mut insert| {
            insert.execute(params![
                command.id,
                command.cluster_uid,
                state.as_str(),
                command.command,
                command.context,
                command.cluster_token,
                command.submitted_at,
                command.submitted_by,
                environment,
                secrets,
                timeout_ms,
                command.options.saved_command,
                owner.map(|l| &l.owner),
                owner.map(|l| l.until),
                started_at,
                needed,
                deadline,
                requester,
                run_as_column(&command.options)
            ])
        })
        .map_err(backend)?;
    Ok(())
}

/// The kubeconfig and settings document of the cluster a command runs against.
fn run_inputs(conn: &Connection, cluster_uid: &str) -> StoreResult<(Option<Vec<u8>>, Option<String>)> {
    let found = optional_record(conn, RUN_INPUTS.sqlite(), params![cluster_uid], |r| {
        Ok((r.opt_bytes("kubeconfig")?, r.opt_text("document")?))
    })?;
    Ok(found.unwrap_or_default())
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn insert_command(&self, command: NewCommand) -> StoreResult<()> {
        self.call(move |conn| insert(conn, &command, command.queued_state(), None, command.pinned.as_ref())).await
    }

    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        debug_assert!(command.hold.is_none(), "a held command is never started at submission");
        let lease = lease.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            insert(&tx, &command, CommandState::Running, Some(lease.now), Some(&lease))?;
            let (kubeconfig, document) = run_inputs(&tx, command.cluster_uid.as_str())?;
            tx.commit().map_err(backend)?;
            Ok(ClaimedCommand::submitted(command, kubeconfig, document.as_deref()))
        })
        .await
    }

    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>> {
        let (cluster_uid, id) = (cluster_uid.to_string(), id.to_string());
        self.read(move |conn| optional_record(conn, GET.sqlite(), params![id, cluster_uid, now], |r| record(r)))
    }

    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        let lease = lease.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let taken = optional_record(&tx, CLAIM_SQLITE, params![lease.now, lease.owner, lease.until], |r| {
                Ok((r.text("cluster_uid")?, claimed(r, None, None)?))
            })?;
            let Some((cluster_uid, mut command)) = taken else { return Ok(None) };
            let (kubeconfig, document) = run_inputs(&tx, &cluster_uid)?;
            command.kubeconfig = kubeconfig;
            command.settings = settings_of(document.as_deref());
            tx.commit().map_err(backend)?;
            Ok(Some(command))
        })
        .await
    }

    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool> {
        debug_assert!(CommandState::Running.can_become(outcome.state()));
        let id = id.to_string();
        let (exit_code, logs, reason) = outcome_columns(outcome);
        let state = outcome.state().as_str();
        self.call(move |conn| {
            let params = params![id, state, now, exit_code, logs, reason, expires_at];
            Ok(conn.execute(FINISH.sqlite(), params).map_err(backend)? > 0)
        })
        .await
    }

    async fn report_after_lost(&self, id: &CommandId, owner: &str, exit_code: i32, logs: &str) -> StoreResult<bool> {
        let reason = FailureReason::LostThenReported { exit_code }.as_reason();
        let (id, owner, logs) = (id.to_string(), owner.to_string(), logs.to_string());
        self.call(move |conn| {
            Ok(conn.execute(REPORT_AFTER_LOST.sqlite(), params![id, owner, reason, logs]).map_err(backend)? > 0)
        })
        .await
    }

    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64> {
        let interrupted = FailureReason::Interrupted.as_reason();
        let lost = FailureReason::SecretsLost.as_reason();
        let owner = owner.to_string();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let running = tx
                .execute(INTERRUPT_RUNNING.sqlite(), params![now, interrupted, expires_at, owner])
                .map_err(backend)?;
            let pinned =
                tx.execute(INTERRUPT_PINNED.sqlite(), params![now, lost, expires_at, owner]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok((running + pinned) as u64)
        })
        .await
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>> {
        let owner = owner.to_string();
        self.call(move |conn| {
            let renewed = records(conn, RENEW.sqlite(), params![owner, until], |r| {
                Ok((CommandId::from_text(r.text("id")?), r.opt_text("cancel_requested_by")?))
            })?;
            Ok(renewed.into_iter().filter_map(|(id, by)| Some(CancelRequest { id, by: by? })).collect())
        })
        .await
    }

    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let reason = FailureReason::WorkerLost.as_reason();
        self.call(move |conn| records(conn, END_LOST.sqlite(), params![now, reason, expires_at], |r| command_id(r)))
            .await
    }

    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool> {
        let (cluster_uid, id, by) = (cluster_uid.to_string(), id.to_string(), by.to_string());
        self.call(move |conn| {
            Ok(conn.execute(REQUEST_CANCEL.sqlite(), params![id, cluster_uid, by]).map_err(backend)? > 0)
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>> {
        self.call(move |conn| records(conn, PURGE.sqlite(), params![now], |r| command_id(r))).await
    }

    async fn cancel_queued(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<CommandState>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Canceled));
        let (cluster_uid, id) = (cluster_uid.to_string(), id.to_string());
        let reason = FailureReason::Canceled(by.to_string()).as_reason();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let state =
                optional_record(&tx, QUEUED_STATE.sqlite(), params![id, cluster_uid, now], |r| r.text("state"))?;
            let Some(state) = state.as_deref().and_then(CommandState::parse) else {
                return Ok(None);
            };
            if matches!(state, CommandState::Accepted | CommandState::PendingApproval) {
                tx.execute(CANCEL_QUEUED.sqlite(), params![id, now, reason, expires_at]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(state))
        })
        .await
    }

    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>> {
        let cluster_uid = cluster_uid.to_string();
        self.read(move |conn| {
            let params = params![cluster_uid, before.unwrap_or(i64::MAX), now, limit as i64];
            records(conn, HISTORY.sqlite(), params, |r| summary(r))
        })
    }

    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>> {
        self.read(|conn| records(conn, RUNNING_IDS.sqlite(), [], |r| command_id(r)))
    }

    async fn count_accepted(&self) -> StoreResult<usize> {
        self.read(|conn| {
            let n = optional_record(conn, COUNT_ACCEPTED.sqlite(), [], |r| r.int("accepted"))?;
            Ok(n.unwrap_or(0) as usize)
        })
    }
}
