//! [`ApprovalStore`] on PostgreSQL: a decision locks the command's row, so decisions given on
//! different replicas at once are counted one after the other.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::*;
use crate::command::FailureReason;
use crate::store::postgres::{PostgresStore, WORK_CHANNEL, db_error, records};

/// Records an approval of `id` and releases it once it is the last one needed.
async fn approve(
    tx: &(impl CachedQueries + Sync),
    kind: &Decisions,
    id: &str,
    decision: &Decision,
    hold: Option<&Hold>,
) -> StoreResult<Decided> {
    let who: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&id, &decision.approver_oid, &decision.approver, &decision.reason, &decision.at];
    if tx.execute_cached(kind.add_approval.postgres(), &who).await.map_err(db_error)? == 0 {
        return Ok(Decided::AlreadyApproved);
    }
    let approvals = tx.query_one_cached(kind.count.postgres(), &[&id]).await.map_err(db_error)?.int("approvals")?;
    let decided = counted(approvals, hold);
    if decided == Decided::Released {
        tx.execute_cached(kind.release.postgres(), &[&id, &decision.at]).await.map_err(db_error)?;
    }
    Ok(decided)
}

/// `held` with its decisions.
async fn with_decisions(client: &(impl CachedQueries + Sync), mut command: HeldCommand) -> StoreResult<HeldCommand> {
    let rows = client.query_cached(COMMAND_DECISIONS.list.postgres(), &[&command.id]).await.map_err(db_error)?;
    command.decisions = records(&rows, decision)?;
    Ok(command)
}

#[async_trait]
impl ApprovalStore for PostgresStore {
    async fn pending_approvals(&self, now: i64, limit: usize) -> StoreResult<Vec<HeldCommand>> {
        let client = self.client().await?;
        let rows = client.query_cached(PENDING.postgres(), &[&now, &(limit as i64)]).await.map_err(db_error)?;
        let mut pending = Vec::with_capacity(rows.len());
        for command in records(&rows, held)? {
            pending.push(with_decisions(&client, command).await?);
        }
        Ok(pending)
    }

    async fn held_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<HeldCommand>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(HELD.postgres(), &[&id, &cluster_uid, &now]).await.map_err(db_error)?;
        match row.as_ref().map(held).transpose()? {
            Some(command) => Ok(Some(with_decisions(&client, command).await?)),
            None => Ok(None),
        }
    }

    async fn held_context(&self, cluster_uid: &ClusterUid, id: &CommandId, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(CONTEXT.postgres(), &[&id, &cluster_uid, &now]).await.map_err(db_error)?;
        Ok(row.map(|r| r.opt_bytes("context")).transpose()?.flatten())
    }

    async fn decide(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        decision: &Decision,
        expires_at: i64,
    ) -> StoreResult<Decided> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let now = decision.at;
        let row =
            tx.query_opt_cached(HOLD_STATE_FOR_UPDATE_POSTGRES, &[&id, &cluster_uid, &now]).await.map_err(db_error)?;
        let Some(row) = row else { return Ok(Decided::NotFound) };
        let state = command_state(&row.text("state")?)?;
        let hold = hold(&row)?;
        let decided = match admissible(state, hold.as_ref(), decision) {
            Err(Decided::Expired) => {
                let reason = FailureReason::ApprovalExpired.as_reason();
                tx.execute_cached(EXPIRE.postgres(), &[&now, &reason, &expires_at]).await.map_err(db_error)?;
                Decided::Expired
            }
            Err(answer) => answer,
            Ok(()) => {
                let who: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&id, &decision.approver_oid, &decision.approver, &decision.reason, &now];
                match decision.verdict {
                    Verdict::Reject => {
                        tx.execute_cached(COMMAND_DECISIONS.add_rejection.postgres(), &who).await.map_err(db_error)?;
                        let reason = rejection_reason(decision);
                        tx.execute_cached(REJECT.postgres(), &[&id, &now, &reason, &expires_at])
                            .await
                            .map_err(db_error)?;
                        Decided::Rejected
                    }
                    Verdict::Approve => {
                        let decided = approve(&tx, &COMMAND_DECISIONS, id.as_str(), decision, hold.as_ref()).await?;
                        if decided == Decided::Released {
                            // Every replica's claim loop hears of it, as of a new submission.
                            tx.execute_cached("SELECT pg_notify($1, $2)", &[&WORK_CHANNEL, &id])
                                .await
                                .map_err(db_error)?;
                        }
                        decided
                    }
                }
            }
        };
        tx.commit().await.map_err(db_error)?;
        Ok(decided)
    }

    async fn decide_run(&self, run: &RunId, scope_key: &str, decision: &Decision) -> StoreResult<Decided> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let now = decision.at;
        let run = run.as_str();
        let row =
            tx.query_opt_cached(RUN_HOLD_STATE_FOR_UPDATE_POSTGRES, &[&run, &scope_key]).await.map_err(db_error)?;
        let Some(row) = row else { return Ok(Decided::NotFound) };
        let (state, hold) = (run_state(&row)?, hold(&row)?);
        let who: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&run, &decision.approver_oid, &decision.approver, &decision.reason, &now];
        let decided = match admissible(state, hold.as_ref(), decision) {
            Err(Decided::Expired) => {
                let reason = run_expiry_reason();
                tx.execute_cached(EXPIRE_RUN_TARGETS.postgres(), &[&run, &reason, &now]).await.map_err(db_error)?;
                Decided::Expired
            }
            Err(answer) => answer,
            Ok(()) => match decision.verdict {
                Verdict::Reject => {
                    let reason = rejection_reason(decision);
                    tx.execute_cached(RUN_DECISIONS.add_rejection.postgres(), &who).await.map_err(db_error)?;
                    tx.execute_cached(REJECT_RUN.postgres(), &[&run, &reason]).await.map_err(db_error)?;
                    tx.execute_cached(REJECT_RUN_TARGETS.postgres(), &[&run, &reason]).await.map_err(db_error)?;
                    Decided::Rejected
                }
                Verdict::Approve => approve(&tx, &RUN_DECISIONS, run, decision, hold.as_ref()).await?,
            },
        };
        tx.commit().await.map_err(db_error)?;
        Ok(decided)
    }

    async fn expire_run(&self, run: &RunId, now: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let reason = run_expiry_reason();
        let n = client
            .execute_cached(EXPIRE_RUN_TARGETS.postgres(), &[&run.as_str(), &reason, &now])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn expire_approvals(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        let reason = FailureReason::ApprovalExpired.as_reason();
        let rows = client.query_cached(EXPIRE.postgres(), &[&now, &reason, &expires_at]).await.map_err(db_error)?;
        records(&rows, |r| Ok(CommandId::from_text(r.text("id")?)))
    }
}
