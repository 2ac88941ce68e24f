//! The approval use cases: a decision on a held command, and the expiry of those nobody decided
//! on in time. The rules (two-person, one count per approver) are applied by the store under the
//! command row's lock; what the dispatcher adds is the queue: a command released by its last
//! approver joins it here, and any replica's claim loop may take it.

use crate::approval::{Decision, Verdict};
use crate::command::CommandId;
use crate::fanout::RunId;
use crate::store::{ClusterUid, Decided, StoreResult};
use crate::time::now_millis;

use super::Dispatcher;

/// Who decides.
pub(crate) struct Approver {
    /// `appId (objectId)`.
    pub principal: String,
    pub object_id: String,
}

impl Approver {
    /// This approver's `verdict`, now, for `reason`.
    fn decides(&self, verdict: Verdict, reason: String, at: i64) -> Decision {
        Decision { verdict, approver_oid: self.object_id.clone(), approver: self.principal.clone(), reason, at }
    }
}

impl Dispatcher {
    /// Records `verdict` on a command waiting for approval.
    pub(crate) async fn decide(
        &self,
        cluster: &ClusterUid,
        id: &CommandId,
        verdict: Verdict,
        approver: &Approver,
        reason: String,
    ) -> StoreResult<Decided> {
        let now = now_millis();
        let decision = approver.decides(verdict, reason, now);
        let decided = self.store.approvals().decide(cluster, id, &decision, self.expiry_from(now)).await?;
        match &decided {
            Decided::Released => {
                self.queue.joined();
                tracing::info!(command_id = %id, approver = approver.principal, "command approved: it joins the queue");
            }
            Decided::Counted { approvals, needed } => {
                tracing::info!(command_id = %id, approver = approver.principal, approvals, needed, "command approval counted");
            }
            Decided::Rejected => {
                self.secrets.take(id);
                tracing::info!(command_id = %id, approver = approver.principal, "command rejected");
            }
            Decided::Expired => {
                self.secrets.take(id);
            }
            _ => {}
        }
        Ok(decided)
    }

    /// Records `verdict` on a fan-out run of `scope_key` waiting for approval, as a whole (its
    /// targets start from the run driver's next pass).
    pub(crate) async fn decide_run(
        &self,
        run: &RunId,
        scope_key: &str,
        verdict: Verdict,
        approver: &Approver,
        reason: String,
    ) -> StoreResult<Decided> {
        let decision = approver.decides(verdict, reason, now_millis());
        let decided = self.store.approvals().decide_run(run, scope_key, &decision).await?;
        tracing::info!(run_id = %run, approver = approver.principal, decision = verdict.as_str(), ?decided, "fan-out run decision");
        Ok(decided)
    }

    /// Ends `Failed`/`ApprovalExpired` what waited past its deadline: run by every replica's
    /// lease keeper (the update is guarded, so whichever replica gets there first ends it).
    pub(super) async fn expire_approvals(&self) {
        let now = now_millis();
        match self.store.approvals().expire_approvals(now, self.expiry_from(now)).await {
            Ok(expired) => {
                for id in &expired {
                    self.secrets.take(id);
                    tracing::info!(command_id = %id, "command ended Failed/ApprovalExpired: not approved in time");
                }
                metrics::counter!("kubeinvoke_commands_total", "state" => "Failed").increment(expired.len() as u64);
            }
            Err(e) => tracing::warn!(error = %e, "ending expired approvals failed"),
        }
    }
}
