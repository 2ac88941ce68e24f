//! [`ApprovalStore`] on SQLite: a decision runs on the one writer, inside one transaction.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::*;
use crate::command::FailureReason;
use crate::store::sqlite::{SqliteStore, backend, optional_record, records};

/// Records an approval of `id` and releases it once it is the last one needed.
fn approve(
    tx: &Connection,
    kind: &Decisions,
    id: &str,
    decision: &Decision,
    hold: Option<&Hold>,
) -> StoreResult<Decided> {
    let who = params![id, decision.approver_oid, decision.approver, decision.reason, decision.at];
    if tx.execute(kind.add_approval.sqlite(), who).map_err(backend)? == 0 {
        return Ok(Decided::AlreadyApproved);
    }
    let approvals = optional_record(tx, kind.count.sqlite(), params![id], |r| r.int("approvals"))?.unwrap_or(0);
    let decided = counted(approvals, hold);
    if decided == Decided::Released {
        tx.execute(kind.release.sqlite(), params![id, decision.at]).map_err(backend)?;
    }
    Ok(decided)
}

/// `held` with its decisions.
fn with_decisions(conn: &Connection, mut command: HeldCommand) -> StoreResult<HeldCommand> {
    command.decisions = records(conn, COMMAND_DECISIONS.list.sqlite(), params![command.id], |r| decision(r))?;
    Ok(command)
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn pending_approvals(&self, now: i64, limit: usize) -> StoreResult<Vec<HeldCommand>> {
        self.read(move |conn| {
            let pending = records(conn, PENDING.sqlite(), params![now, limit as i64], |r| held(r))?;
            pending.into_iter().map(|c| with_decisions(conn, c)).collect()
        })
    }

    async fn held_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<HeldCommand>> {
        let (cluster_uid, id) = (cluster_uid.clone(), id.clone());
        self.read(move |conn| {
            let found = optional_record(conn, HELD.sqlite(), params![id, cluster_uid, now], |r| held(r))?;
            found.map(|c| with_decisions(conn, c)).transpose()
        })
    }

    async fn held_context(&self, cluster_uid: &ClusterUid, id: &CommandId, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let (cluster_uid, id) = (cluster_uid.clone(), id.clone());
        self.read(move |conn| {
            let found =
                optional_record(conn, CONTEXT.sqlite(), params![id, cluster_uid, now], |r| r.opt_bytes("context"))?;
            Ok(found.flatten())
        })
    }

    async fn decide(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        decision: &Decision,
        expires_at: i64,
    ) -> StoreResult<Decided> {
        let (cluster_uid, id, decision) = (cluster_uid.clone(), id.clone(), decision.clone());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let now = decision.at;
            let found = optional_record(&tx, HOLD_STATE.sqlite(), params![id, cluster_uid, now], |r| {
                Ok((command_state(&r.text("state")?)?, hold(r)?))
            })?;
            let Some((state, hold)) = found else { return Ok(Decided::NotFound) };
            let decided = match admissible(state, hold.as_ref(), &decision) {
                Err(Decided::Expired) => {
                    let reason = FailureReason::ApprovalExpired.as_reason();
                    records(&tx, EXPIRE.sqlite(), params![now, reason, expires_at], |r| r.text("id"))?;
                    Decided::Expired
                }
                Err(answer) => answer,
                Ok(()) => {
                    let who = params![id, decision.approver_oid, decision.approver, decision.reason, now];
                    match decision.verdict {
                        Verdict::Reject => {
                            tx.execute(COMMAND_DECISIONS.add_rejection.sqlite(), who).map_err(backend)?;
                            tx.execute(REJECT.sqlite(), params![id, now, rejection_reason(&decision), expires_at])
                                .map_err(backend)?;
                            Decided::Rejected
                        }
                        Verdict::Approve => approve(&tx, &COMMAND_DECISIONS, id.as_str(), &decision, hold.as_ref())?,
                    }
                }
            };
            tx.commit().map_err(backend)?;
            Ok(decided)
        })
        .await
    }

    async fn decide_run(&self, run: &RunId, scope_key: &str, decision: &Decision) -> StoreResult<Decided> {
        let (run, scope_key, decision) = (run.to_string(), scope_key.to_string(), decision.clone());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let now = decision.at;
            let found = optional_record(&tx, RUN_HOLD_STATE.sqlite(), params![run, scope_key], |r| {
                Ok((run_state(r)?, hold(r)?))
            })?;
            let Some((state, hold)) = found else { return Ok(Decided::NotFound) };
            let who = params![run, decision.approver_oid, decision.approver, decision.reason, now];
            let decided = match admissible(state, hold.as_ref(), &decision) {
                Err(Decided::Expired) => {
                    tx.execute(EXPIRE_RUN_TARGETS.sqlite(), params![run, run_expiry_reason(), now]).map_err(backend)?;
                    Decided::Expired
                }
                Err(answer) => answer,
                Ok(()) => match decision.verdict {
                    Verdict::Reject => {
                        let reason = rejection_reason(&decision);
                        tx.execute(RUN_DECISIONS.add_rejection.sqlite(), who).map_err(backend)?;
                        tx.execute(REJECT_RUN.sqlite(), params![run, reason]).map_err(backend)?;
                        tx.execute(REJECT_RUN_TARGETS.sqlite(), params![run, reason]).map_err(backend)?;
                        Decided::Rejected
                    }
                    Verdict::Approve => approve(&tx, &RUN_DECISIONS, &run, &decision, hold.as_ref())?,
                },
            };
            tx.commit().map_err(backend)?;
            Ok(decided)
        })
        .await
    }

    async fn expire_run(&self, run: &RunId, now: i64) -> StoreResult<bool> {
        let run = run.to_string();
        self.call(move |conn| {
            Ok(conn.execute(EXPIRE_RUN_TARGETS.sqlite(), params![run, run_expiry_reason(), now]).map_err(backend)? > 0)
        })
        .await
    }

    async fn expire_approvals(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let reason = FailureReason::ApprovalExpired.as_reason();
        self.call(move |conn| {
            records(conn, EXPIRE.sqlite(), params![now, reason, expires_at], |r| {
                Ok(CommandId::from_text(r.text("id")?))
            })
        })
        .await
    }
}
