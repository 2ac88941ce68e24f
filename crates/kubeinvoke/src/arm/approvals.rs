//! The wire shapes of four eyes (an extension): the body of an approve or reject, and what an
//! approver sees of a held command. Secret parameter values never appear; their names do.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{Label, SECRET_SHOWN_AS, cluster_id};
use crate::command::CommandState;
use crate::store::HeldCommand;
use crate::time::rfc3339;

/// `POST …/commandResults/{id}/approve` or `/reject`: `{"reason": "…"}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DecisionRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A held command as its approvers see it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ApprovalView {
    /// `…/commandResults/{id}/approval`.
    pub id: String,
    /// The command's id.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Label,
    pub properties: ApprovalProperties,
}

pub(crate) const APPROVAL_TYPE: &str = "Microsoft.ContainerService/managedClusters/commandResults/approvals";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalProperties {
    pub command_id: String,
    pub cluster_id: String,
    /// The command's state: `PendingApproval` while it waits.
    pub provisioning_state: CommandState,
    pub command: String,
    /// `appId (objectId)` of the requester.
    pub requested_by: String,
    pub requested_at: String,
    /// When it ends `ApprovalExpired` if still undecided.
    pub expires_at: String,
    pub approvals_needed: u8,
    pub approvals: Vec<DecisionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_command: Option<String>,
    /// A saved command's parameters; a secret one shows as `(secret)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// The attached files, names and sizes (the zip itself: `…/context`).
    pub files: Vec<ContextFile>,
}

impl ApprovalProperties {
    /// Approvals given so far.
    pub(crate) fn approved(&self) -> usize {
        self.approvals.iter().filter(|d| d.decision == crate::approval::Verdict::Approve.as_str()).count()
    }
}

/// One approver's decision.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecisionView {
    pub approver: String,
    /// `Approved` or `Rejected`.
    pub decision: Label,
    pub reason: String,
    pub decided_at: String,
}

/// A file of the attached zip.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ContextFile {
    pub name: String,
    pub size: u64,
}

impl DecisionView {
    pub(crate) fn of(d: &crate::approval::Decision) -> Self {
        DecisionView {
            approver: d.approver.clone(),
            decision: d.verdict.as_str().into(),
            reason: d.reason.clone(),
            decided_at: rfc3339(d.at),
        }
    }
}

impl ApprovalView {
    /// The view of `held`, whose attached files are `files`.
    pub(crate) fn of(held: &HeldCommand, files: Vec<ContextFile>) -> Self {
        let cluster = cluster_id(&held.subscription, &held.group, &held.cluster);
        let parameters = held.saved_command.as_ref().map(|_| {
            let plain = held.parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone())));
            let secret = held.secret_names.iter().map(|k| (k.clone(), Value::String(SECRET_SHOWN_AS.into())));
            plain.chain(secret).collect()
        });
        ApprovalView {
            id: format!("{cluster}/commandResults/{}/approval", held.id),
            name: held.id.to_string(),
            kind: APPROVAL_TYPE.into(),
            properties: ApprovalProperties {
                command_id: held.id.to_string(),
                cluster_id: cluster,
                provisioning_state: held.state,
                command: held.command.clone(),
                requested_by: held.submitted_by.clone(),
                requested_at: rfc3339(held.submitted_at),
                expires_at: rfc3339(held.hold.deadline),
                approvals_needed: held.hold.needed,
                approvals: held.decisions.iter().map(DecisionView::of).collect(),
                saved_command: held.saved_command.clone(),
                parameters,
                files,
            },
        }
    }
}
