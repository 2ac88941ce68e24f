//! The submit use case, one for every way a command is asked for on a cluster — `runCommand`,
//! `runSavedCommand` and the targets of a fan-out run ([`Dispatcher::submit_asked`]): whether the
//! cluster admits it ([`admit`], decided before anything costly), the caller's `clusterToken`
//! (checked only where the cluster is AAD-managed, and only the caller's own is taken), the
//! attached files (unpacked within their limits, off the async threads), then the command as it
//! is queued ([`Dispatcher::submit_to`]): the smallest timeout asked for, a saved command's
//! parameters. Handlers only parse the request, call it, and render what it answers.

use std::sync::Arc;
use std::time::Duration;

use super::Dispatcher;
use super::commands::{Submission, SubmitError};
use super::queue::QueueFull;
use crate::approval::ApprovalPolicy;
use crate::cluster_settings::{ClusterSettings, InvalidSetting, Refusal};
use crate::command::CommandId;
use crate::context::{ContextError, ContextLimits};
use crate::store::{ClusterRecord, ClusterUid, CommandOptions, StoreError};

/// A cluster that admits the command asked for, and what it said about itself.
#[derive(Debug)]
pub(crate) struct Admitted {
    cluster_uid: ClusterUid,
    aad_managed: bool,
    /// The cluster's approval policy, if it has one.
    policy: Option<ApprovalPolicy>,
    /// Nobody but the asker vetted the command: a free-form line, or a saved command the asker
    /// wrote last. `freeFormOnly` holds these; `always` holds everything.
    unvetted: bool,
}

impl Admitted {
    /// Whether the command acts as its caller (a `clusterToken` is needed and is kept).
    pub(crate) fn aad_managed(&self) -> bool {
        self.aad_managed
    }

    /// `admit` holds a saved command only under `mode: "always"`; one that nobody but its asker
    /// vetted (`vetted` false) is held like a free-form line.
    fn vetted_by_another(mut self, vetted: bool) -> Self {
        self.unvetted |= !vetted;
        self
    }

    /// The policy under which the command waits for approvers, if it does.
    pub(crate) fn held_by(&self) -> Option<ApprovalPolicy> {
        self.policy.filter(|policy| policy.holds(self.unvetted))
    }
}

/// Why a cluster does not take a command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotAdmitted {
    /// The cluster's own settings cannot be read.
    #[error("{}: {}", .0.property, .0.message)]
    InvalidSetting(InvalidSetting),
    /// The cluster does not take this command (`disableRunCommand`, a missing `clusterToken`).
    #[error("the cluster refuses the command: {0:?}")]
    Cluster(Refusal),
    /// A fan-out target on a cluster that holds its commands for approval, in a run that was
    /// not approved.
    #[error("the cluster holds its commands for approval")]
    ApprovalRequired,
}

impl NotAdmitted {
    /// A fan-out target's skip reason: its code (`fanout::skip`), then what the cluster says.
    pub(crate) fn skip_reason(&self) -> String {
        use crate::fanout::skip;
        let (code, detail) = match self {
            NotAdmitted::InvalidSetting(e) => (skip::INVALID_CLUSTER_SETTING, format!("{}: {}", e.property, e.message)),
            NotAdmitted::Cluster(Refusal::RunCommandDisabled) => {
                (skip::RUN_COMMAND_DISABLED, "properties.apiServerAccessProfile.disableRunCommand is true".into())
            }
            NotAdmitted::Cluster(Refusal::ClusterTokenRequired) => {
                (skip::CLUSTER_TOKEN_REQUIRED, "the cluster is AAD-managed and the run has no clusterToken".into())
            }
            NotAdmitted::ApprovalRequired => (
                skip::APPROVAL_REQUIRED,
                "properties.commandApproval holds free-form commands for approval, and the run was not approved".into(),
            ),
        };
        format!("{code}: {detail}")
    }
}

/// Why a `clusterToken` is not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenRefusal {
    /// Not a token of the AKS AAD server application that this server accepts.
    #[error("{0}")]
    Invalid(String),
    /// A good token, of another principal than the one submitting.
    #[error("it belongs to another principal")]
    NotTheCallers,
}

/// Who asks: the principal a command is recorded under and whose token alone it may carry.
pub(crate) struct Asker {
    /// `appId (objectId)`.
    pub principal: String,
    pub object_id: String,
    pub tenant_id: String,
}

/// Checks that a `clusterToken` is valid for the AKS AAD server application and the asker's own
/// (the identity service does; the dispatcher knows no token format).
#[async_trait::async_trait]
pub(crate) trait TokenCheck: Send + Sync {
    async fn check_cluster_token(&self, token: &str, asker: &Asker) -> Result<(), TokenRefusal>;
}

/// What the checks of every submission need from the server.
pub(crate) struct SubmitChecks<'a> {
    pub tokens: &'a dyn TokenCheck,
    pub context_limits: ContextLimits,
}

impl SubmitChecks<'_> {
    /// The caller's token, if it is theirs and valid.
    pub(crate) async fn cluster_token(&self, token: &str, asker: &Asker) -> Result<String, Refused> {
        self.tokens.check_cluster_token(token, asker).await.map_err(Refused::ClusterToken)?;
        Ok(token.to_string())
    }

    /// The attached files (a base64 zip), validated off the async threads (without a hop to
    /// them when nothing is attached).
    pub(crate) async fn context(&self, raw: Option<String>) -> Result<Vec<u8>, Refused> {
        let limits = self.context_limits;
        let attached = raw.is_some();
        let decode = move || crate::context::decode(raw.as_deref(), limits);
        let decoded = match attached {
            true => tokio::task::spawn_blocking(decode)
                .await
                .map_err(|e| Refused::Store(StoreError::Backend(anyhow::anyhow!("context check failed: {e}"))))?,
            false => decode(),
        };
        decoded.map_err(Refused::Context)
    }
}

/// One command as asked for: its shape parsed, nothing checked yet.
pub(crate) struct Ask {
    /// A shell line of the caller's (not a saved command's).
    pub free_form: bool,
    /// A saved command last written by the asker: nobody else vetted it, so an approval policy
    /// that lets saved commands through (`freeFormOnly`) holds it like a free-form line.
    pub written_by_asker: bool,
    pub command: String,
    /// The attached files as sent (base64 zip).
    pub context: Option<String>,
    pub cluster_token: Option<String>,
    /// `timeoutInSeconds` of the request: it may only lower the limits.
    pub timeout: Option<Duration>,
    pub saved: Option<SavedInvocation>,
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error(transparent)]
    NotAdmitted(#[from] NotAdmitted),
    #[error("'clusterToken' is refused: {0}")]
    ClusterToken(TokenRefusal),
    #[error("'context' is refused: {0}")]
    Context(ContextError),
    #[error("the queue is full ({} waiting)", .0.queued)]
    QueueFull(QueueFull),
    /// A saved command with `runAs` on a cluster whose commands act as their caller.
    #[error("runAs cannot be used on an AAD-managed cluster: its commands act as their caller")]
    RunAsOnAadCluster,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `cluster` takes a fan-out target's command: as [`admit`], and never past an approval
/// policy the run was not approved under (`approved`).
pub(crate) fn admit_target(cluster: &ClusterRecord, has_token: bool, approved: bool) -> Result<Admitted, NotAdmitted> {
    let admitted = admit(cluster, true, has_token)?;
    if admitted.held_by().is_some() && !approved {
        return Err(NotAdmitted::ApprovalRequired);
    }
    Ok(admitted)
}

/// Whether `cluster` takes a command: `free_form` for a shell line of the caller's (not a saved
/// command), `has_token` when a `clusterToken` came with it.
pub(crate) fn admit(cluster: &ClusterRecord, free_form: bool, has_token: bool) -> Result<Admitted, NotAdmitted> {
    let settings = ClusterSettings::from_document(&cluster.document).map_err(NotAdmitted::InvalidSetting)?;
    settings.admits(free_form, has_token).map_err(NotAdmitted::Cluster)?;
    Ok(Admitted {
        cluster_uid: cluster.uid.clone(),
        aad_managed: settings.aad_managed,
        policy: settings.approval,
        unvetted: free_form,
    })
}

/// One command asked for, its parts already checked: the files unpacked and within their limits,
/// the token the caller's own.
pub(crate) struct CommandRequest {
    pub command: String,
    /// The validated context zip; empty when no files were attached.
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    /// Who asks (`appId (objectId)`).
    pub submitted_by: String,
    /// The asker's object id: the one principal who may never approve it, if it is held.
    pub requester_oid: String,
    /// `timeoutInSeconds` of the request: it may only lower the limits.
    pub timeout: Option<Duration>,
    pub saved: Option<SavedInvocation>,
}

/// What a saved command brings to its run.
pub(crate) struct SavedInvocation {
    /// Its resource id.
    pub id: String,
    /// Its own `timeoutInSeconds`.
    pub timeout: Option<Duration>,
    /// Parameters that are not secret, as environment variables.
    pub environment: Vec<(String, String)>,
    /// Secret parameters: in this server's memory only.
    pub secrets: Vec<(String, String)>,
    /// The identity it acts as in the cluster, if its saved command names one.
    pub run_as: Option<crate::run_as::RunAs>,
}

impl Dispatcher {
    /// The submit use case: admission, then the token, then the files, then the queue.
    pub(crate) async fn submit_asked(
        self: &Arc<Self>,
        cluster: &ClusterRecord,
        ask: Ask,
        asker: &Asker,
        checks: &SubmitChecks<'_>,
    ) -> Result<CommandId, Refused> {
        let token = ask.cluster_token.filter(|t| !t.is_empty());
        let admitted = admit(cluster, ask.free_form, token.is_some())?;
        if admitted.aad_managed() && ask.saved.as_ref().is_some_and(|s| s.run_as.is_some()) {
            return Err(Refused::RunAsOnAadCluster);
        }
        let admitted = admitted.vetted_by_another(!ask.free_form && !ask.written_by_asker);
        let cluster_token = match token.filter(|_| admitted.aad_managed()) {
            Some(token) => Some(checks.cluster_token(&token, asker).await?),
            None => None,
        };
        let context = checks.context(ask.context).await?;
        let request = CommandRequest {
            command: ask.command,
            context,
            cluster_token,
            submitted_by: asker.principal.clone(),
            requester_oid: asker.object_id.clone(),
            timeout: ask.timeout,
            saved: ask.saved,
        };
        self.submit_to(admitted, request).await
    }

    /// Queues a command on a cluster that admitted it.
    async fn submit_to(self: &Arc<Self>, admitted: Admitted, request: CommandRequest) -> Result<CommandId, Refused> {
        let (saved_command, saved_timeout, environment, secrets, run_as) = match request.saved {
            Some(saved) => (Some(saved.id), saved.timeout, saved.environment, saved.secrets, saved.run_as),
            None => (None, None, Vec::new(), Vec::new(), None),
        };
        let timeout = match (saved_timeout, request.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let hold = admitted.held_by().map(|policy| policy.hold(&request.requester_oid, crate::time::now_millis()));
        let submission = Submission {
            hold,
            cluster_uid: admitted.cluster_uid,
            command: request.command,
            context: request.context,
            cluster_token: request.cluster_token.filter(|_| admitted.aad_managed),
            submitted_by: request.submitted_by,
            options: CommandOptions {
                environment,
                secret_names: secrets.iter().map(|(name, _)| name.clone()).collect(),
                timeout,
                saved_command,
                run_as,
            },
            secrets,
        };
        self.submit(submission).await.map_err(|e| match e {
            SubmitError::QueueFull(full) => Refused::QueueFull(full),
            SubmitError::Store(e) => Refused::Store(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(properties: serde_json::Value) -> ClusterRecord {
        let document = json!({"properties": properties}).as_object().cloned().unwrap();
        ClusterRecord {
            uid: ClusterUid::from_text("c1"),
            subscription: "s".into(),
            group: "g".into(),
            name: "n".into(),
            document: Arc::new(document),
            kubeconfig: None,
        }
    }

    #[test]
    fn a_cluster_admits_by_its_own_settings() {
        let disabled = cluster(json!({"apiServerAccessProfile": {"disableRunCommand": true}}));
        assert!(matches!(admit(&disabled, true, false), Err(NotAdmitted::Cluster(Refusal::RunCommandDisabled))));
        assert!(admit(&disabled, false, false).is_ok(), "a saved command is not free-form");
        let aad = cluster(json!({"aadProfile": {"managed": true}}));
        assert!(matches!(admit(&aad, true, false), Err(NotAdmitted::Cluster(Refusal::ClusterTokenRequired))));
        assert!(admit(&aad, true, true).unwrap().aad_managed());
        assert!(!admit(&cluster(json!({})), true, true).unwrap().aad_managed());
        let held = cluster(json!({"commandApproval": {"mode": "freeFormOnly"}}));
        assert!(admit(&held, true, false).unwrap().held_by().is_some(), "a free-form line waits");
        assert!(admit(&held, false, false).unwrap().held_by().is_none(), "a saved command runs at once");
        let always = cluster(json!({"commandApproval": {"mode": "always", "approvers": 2}}));
        assert_eq!(admit(&always, false, false).unwrap().held_by().map(|p| p.approvers), Some(2));
        let self_written = admit(&held, false, false).unwrap().vetted_by_another(false);
        assert!(self_written.held_by().is_some(), "a saved command its asker wrote is nobody else's vetting");
        assert!(admit(&held, false, false).unwrap().vetted_by_another(true).held_by().is_none());
    }
}
