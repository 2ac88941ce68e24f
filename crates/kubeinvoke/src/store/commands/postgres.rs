//! [`CommandStore`] on PostgreSQL: claims skip the rows other replicas are taking, and a cancel
//! locks the row it checks.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::statements::*;
use super::*;
use crate::command::FailureReason;
use crate::store::postgres::{PostgresStore, WORK_CHANNEL, db_error, records};

impl PostgresStore {
    /// Runs `sql`, which wraps [`INSERT`], with the row's nineteen parameters, then `extra`.
    async fn insert_with(
        &self,
        sql: &str,
        command: &NewCommand,
        state: CommandState,
        owner: Option<&Lease>,
        started_at: Option<i64>,
        extra: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let (environment, secrets, timeout_ms) = option_columns(&command.options);
        let (owner, lease_until) = owner.map(|l| (&l.owner, l.until)).unzip();
        let (needed, deadline, requester) = hold_columns(command.hold.as_ref());
        let run_as = run_as_column(&command.options);
        let state = state.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &command.id,
            &command.cluster_uid,
            &state,
            &command.command,
            &command.context,
            &command.cluster_token,
            &command.submitted_at,
            &command.submitted_by,
            &environment,
            &secrets,
            &timeout_ms,
            &command.options.saved_command,
            &owner,
            &lease_until,
            &started_at,
            &needed,
            &deadline,
            &requester,
            &run_as,
        ];
        params.extend_from_slice(extra);
        client.query_cached(sql, &params).await.map_err(db_error)
    }
}

#[async_trait]
impl CommandStore for PostgresStore {
    async fn insert_command(&self, command: NewCommand) -> StoreResult<()> {
        let pinned = command.pinned.as_ref();
        let sql = INSERT_AND_NOTIFY_POSTGRES;
        self.insert_with(sql, &command, command.queued_state(), pinned, None, &[&WORK_CHANNEL]).await?;
        Ok(())
    }

    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        debug_assert!(command.hold.is_none(), "a held command is never started at submission");
        // No announcement: it is nobody else's to claim.
        let sql = INSERT_RUNNING_POSTGRES;
        let rows = self.insert_with(sql, &command, CommandState::Running, Some(lease), Some(lease.now), &[]).await?;
        let row =
            rows.first().ok_or_else(|| StoreError::Backend(anyhow::anyhow!("the inserted command is missing")))?;
        let document = row.opt_text("document")?;
        Ok(ClaimedCommand::submitted(command, row.opt_bytes("kubeconfig")?, document.as_deref()))
    }

    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(GET.postgres(), &[&id, &cluster_uid, &now]).await.map_err(db_error)?;
        row.as_ref().map(record).transpose()
    }

    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        let client = self.client().await?;
        let row = client
            .query_opt_cached(CLAIM_POSTGRES, &[&lease.now, &lease.owner, &lease.until])
            .await
            .map_err(db_error)?;
        row.map(|r| claimed(&r, r.opt_bytes("kubeconfig")?, r.opt_text("document")?.as_deref())).transpose()
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>> {
        let client = self.client().await?;
        let rows = client.query_cached(RENEW.postgres(), &[&owner, &until]).await.map_err(db_error)?;
        let renewed = records(&rows, |r| Ok((command_id(r)?, r.opt_text("cancel_requested_by")?)))?;
        Ok(renewed.into_iter().filter_map(|(id, by)| Some(CancelRequest { id, by: by? })).collect())
    }

    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        let reason = FailureReason::WorkerLost.as_reason();
        records(
            &client.query_cached(END_LOST.postgres(), &[&now, &reason, &expires_at]).await.map_err(db_error)?,
            command_id,
        )
    }

    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client.execute_cached(REQUEST_CANCEL.postgres(), &[&id, &cluster_uid, &by]).await.map_err(db_error)?;
        Ok(n > 0)
    }

    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool> {
        debug_assert!(CommandState::Running.can_become(outcome.state()));
        let (exit_code, logs, reason) = outcome_columns(outcome);
        let client = self.client().await?;
        let n = client
            .execute_cached(
                FINISH.postgres(),
                &[&id, &outcome.state().as_str(), &now, &exit_code, &logs, &reason, &expires_at],
            )
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn report_after_lost(&self, id: &CommandId, owner: &str, exit_code: i32, logs: &str) -> StoreResult<bool> {
        let reason = FailureReason::LostThenReported { exit_code }.as_reason();
        let client = self.client().await?;
        let n = client
            .execute_cached(REPORT_AFTER_LOST.postgres(), &[&id, &owner, &reason, &logs])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let row = tx
            .query_opt_cached(QUEUED_STATE_FOR_UPDATE_POSTGRES, &[&id, &cluster_uid, &now])
            .await
            .map_err(db_error)?;
        let state = row.map(|r| r.text("state")).transpose()?;
        let Some(state) = state.as_deref().and_then(CommandState::parse) else {
            return Ok(None);
        };
        if matches!(state, CommandState::Accepted | CommandState::PendingApproval) {
            let reason = FailureReason::Canceled(by.to_string()).as_reason();
            tx.execute_cached(CANCEL_QUEUED.postgres(), &[&id, &now, &reason, &expires_at]).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(state))
    }

    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>> {
        let client = self.client().await?;
        let params: [&(dyn ToSql + Sync); 4] = [&cluster_uid, &before.unwrap_or(i64::MAX), &now, &(limit as i64)];
        records(&client.query_cached(HISTORY.postgres(), &params).await.map_err(db_error)?, summary)
    }

    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let interrupted = FailureReason::Interrupted.as_reason();
        let running = tx
            .execute_cached(INTERRUPT_RUNNING.postgres(), &[&now, &interrupted, &expires_at, &owner])
            .await
            .map_err(db_error)?;
        let lost = FailureReason::SecretsLost.as_reason();
        let pinned = tx
            .execute_cached(INTERRUPT_PINNED.postgres(), &[&now, &lost, &expires_at, &owner])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(running + pinned)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        records(&client.query_cached(PURGE.postgres(), &[&now]).await.map_err(db_error)?, command_id)
    }

    async fn count_accepted(&self) -> StoreResult<usize> {
        let client = self.client().await?;
        let n = client.query_one_cached(COUNT_ACCEPTED.postgres(), &[]).await.map_err(db_error)?.int("accepted")?;
        Ok(n as usize)
    }

    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        records(&client.query_cached(RUNNING_IDS.postgres(), &[]).await.map_err(db_error)?, command_id)
    }
}
