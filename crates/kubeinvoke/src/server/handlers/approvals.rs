//! Four eyes (an extension): approve or reject a held command, see what it would run, and list
//! what waits for the caller's decision. The two-person rule and the counting are the store's
//! (under the command row's lock); these handlers translate HTTP and leave the activity log entry
//! with the approver as its caller.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::clusters;
use super::commands::principal_of;
use crate::activity::{NewEvent, caller_of, string_properties};
use crate::approval::{MAX_REASON_BYTES, Verdict};
use crate::arm::ApiError;
use crate::arm::approvals::{ApprovalView, ContextFile, DecisionRequest};
use crate::arm::refusal::ApprovalRefusal;
use crate::arm::wire::{ListResult, cluster_id};
use crate::command::CommandId;
use crate::dispatcher::Approver;
use crate::fanout::{RunId, RunScope, TargetState};
use crate::identity::Caller;
use crate::resource::{ClusterRef, ScopeRef};
use crate::server::AppState;
use crate::server::permissions::APPROVE;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::{ClusterRecord, Decided, HeldCommand, TargetWindow};
use crate::time::now_millis;

/// How many waiting commands a list reads before it filters by the caller's rights.
const PENDING_READ: usize = 1000;

/// `POST …/commandResults/{id}/approve` or `/reject` with `{"reason": "…"}`: 200 with the
/// approval as it stands after this decision.
pub(crate) async fn decide(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    id: &CommandId,
    verdict: Verdict,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let reason = reason_in(app, ctx, body).await?;
    let approver = approver_of(caller);
    let decided = app.dispatcher.decide(&cluster.uid, id, verdict, &approver, reason.clone()).await?;
    match refusal_of(&decided, id.as_str()) {
        Some(Refusal::NotFound) => Err(ApiError::CommandNotFound(id.to_string())),
        Some(Refusal::Refused(refusal)) => Err(refusal.into()),
        None => {
            let resource = cluster_id(&cluster.subscription, &cluster.group, &cluster.name);
            let event = decision_event(&approver, &reason, verdict, &decided, ("commandId", id.as_str()), resource);
            app.activity.append(vec![event]).await;
            approval(app, &cluster, id).await
        }
    }
}

/// `POST {scope}/providers/Microsoft.ContainerService/commandRuns/{id}/approve` or `/reject`: a
/// fan-out run approved once, as a whole. The approver needs the approve action on every cluster
/// the run would reach (its targets not skipped) and is never the run's creator; 200 with the run.
pub(crate) async fn decide_run(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    id: &RunId,
    verdict: Verdict,
    body: Body,
) -> Result<Response, ApiError> {
    let key = RunScope::new(scope.id()).key;
    let run = app.store.runs().get_run(id, Some(&key), TargetWindow::All).await?;
    // Without the action on all its clusters the answer is 403 whether or not the run exists.
    let reached: Vec<&str> = run
        .iter()
        .flat_map(|r| r.targets.iter())
        .filter(|t| t.state != TargetState::Skipped)
        .map(|t| t.cluster_id.as_str())
        .collect();
    for cluster in &reached {
        caller.require(APPROVE, cluster)?;
    }
    if run.is_none() {
        caller.require(APPROVE, &scope.id())?;
    }
    let run = run.ok_or_else(|| ApiError::RunNotFound(id.to_string()))?;
    let reason = reason_in(app, ctx, body).await?;
    let approver = approver_of(caller);
    let decided = app.dispatcher.decide_run(id, &key, verdict, &approver, reason.clone()).await?;
    match refusal_of(&decided, id.as_str()) {
        Some(Refusal::NotFound) => Err(ApiError::RunNotFound(id.to_string())),
        Some(Refusal::Refused(refusal)) => Err(refusal.into()),
        None => {
            let resource = RunScope::new(scope.id()).run_id(id);
            let event = decision_event(&approver, &reason, verdict, &decided, ("runId", id.as_str()), resource);
            app.activity.append(vec![event]).await;
            app.runs.wake();
            let run = app.store.runs().get_run(id, Some(&key), super::runs::SHOWN_TARGETS).await?.unwrap_or(run);
            Ok(json(StatusCode::OK, &super::runs::shown(ctx, &run)))
        }
    }
}

/// Why a decision was not taken, if it was not.
enum Refusal {
    NotFound,
    Refused(ApprovalRefusal),
}

fn refusal_of(decided: &Decided, id: &str) -> Option<Refusal> {
    let id = id.to_string();
    Some(Refusal::Refused(match decided {
        Decided::NotFound => return Some(Refusal::NotFound),
        Decided::NotPending(state) => ApprovalRefusal::NotPending { id, state },
        Decided::Expired => ApprovalRefusal::Expired(id),
        Decided::OwnCommand => ApprovalRefusal::OwnCommand(id),
        Decided::AlreadyApproved => ApprovalRefusal::AlreadyApproved(id),
        Decided::Counted { .. } | Decided::Released | Decided::Rejected => return None,
    }))
}

/// `GET …/commandResults/{id}/approval`: what the command would run, who asked, and who decided.
pub(crate) async fn view(app: &AppState, cluster_ref: &ClusterRef, id: &CommandId) -> Result<Response, ApiError> {
    approval(app, &clusters::load(app, cluster_ref).await?, id).await
}

/// 200 with a held command's approval as it stands, its attached files listed.
async fn approval(app: &AppState, cluster: &ClusterRecord, id: &CommandId) -> Result<Response, ApiError> {
    let held = held_of(app, cluster, id).await?;
    Ok(json(StatusCode::OK, &ApprovalView::of(&held, files_of(app, cluster, id).await?)))
}

/// The principal deciding, as decisions record it.
fn approver_of(caller: &Caller) -> Approver {
    Approver { principal: principal_of(caller), object_id: caller.claims.oid.clone() }
}

/// The reason of a decision's body (`{"reason": "…"}`), checked.
async fn reason_in(app: &AppState, ctx: &RequestContext, body: Body) -> Result<String, ApiError> {
    let request: DecisionRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    reason_of(request.reason)
}

/// `GET …/commandResults/{id}/context`: the attached zip as it will be unpacked.
pub(crate) async fn context(app: &AppState, cluster_ref: &ClusterRef, id: &CommandId) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    held_of(app, &cluster, id).await?;
    let zip = app.store.approvals().held_context(&cluster.uid, id, now_millis()).await?.unwrap_or_default();
    let mut response = (StatusCode::OK, zip).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.zip\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// `GET {scope}/providers/Microsoft.ContainerService/pendingApprovals`: the commands of the scope
/// that wait for the caller: held, on a cluster where the caller may approve, not requested by
/// them, and not approved by them already.
pub(crate) async fn pending(app: &AppState, caller: &Caller, scope: &ScopeRef) -> Result<Response, ApiError> {
    let waiting = app.store.approvals().pending_approvals(now_millis(), PENDING_READ).await?;
    let in_scope = |held: &&HeldCommand| {
        held.subscription.eq_ignore_ascii_case(scope.subscription().as_str())
            && match scope {
                ScopeRef::Subscription(_) => true,
                ScopeRef::Group(g) => held.group.eq_ignore_ascii_case(g.group.as_str()),
            }
    };
    let oid = &caller.claims.oid;
    let for_caller = |held: &&HeldCommand| {
        held.hold.requester != *oid
            && !held.decisions.iter().any(|d| d.approver_oid == *oid)
            && caller.may(APPROVE, &cluster_id(&held.subscription, &held.group, &held.cluster))
    };
    let value =
        waiting.iter().filter(in_scope).filter(for_caller).map(|held| ApprovalView::of(held, Vec::new())).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

/// A decision's reason: required, one line of at most [`MAX_REASON_BYTES`] bytes.
fn reason_of(reason: Option<String>) -> Result<String, ApiError> {
    let reason = reason.map(|r| r.trim().to_string()).unwrap_or_default();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason", "'reason' is required: say why you approve or reject the command."));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::invalid("reason", format!("'reason' is longer than {MAX_REASON_BYTES} bytes.")));
    }
    if reason.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", "'reason' must be one line of text, without control characters."));
    }
    Ok(reason)
}

async fn held_of(app: &AppState, cluster: &ClusterRecord, id: &CommandId) -> Result<HeldCommand, ApiError> {
    let found = app.store.approvals().held_command(&cluster.uid, id, now_millis()).await?;
    match found {
        Some(held) => Ok(held),
        None => match app.store.commands().get_command(&cluster.uid, id, now_millis()).await? {
            Some(_) => Err(ApprovalRefusal::NotHeld(id.to_string()).into()),
            None => Err(ApiError::CommandNotFound(id.to_string())),
        },
    }
}

/// The names and sizes of a held command's attached files, listed off the async threads.
async fn files_of(app: &AppState, cluster: &ClusterRecord, id: &CommandId) -> Result<Vec<ContextFile>, ApiError> {
    let Some(zip) = app.store.approvals().held_context(&cluster.uid, id, now_millis()).await? else {
        return Ok(Vec::new());
    };
    if zip.is_empty() {
        return Ok(Vec::new());
    }
    let files = tokio::task::spawn_blocking(move || crate::context::files(&zip)).await.map_err(ApiError::internal)?;
    Ok(files.into_iter().map(|(name, size)| ContextFile { name, size }).collect())
}

/// The activity log entry of a decision that was taken, with the approver as its caller: on
/// `subject` (`("commandId" | "runId", id)`, also its correlation id), a resource of `resource_id`.
fn decision_event(
    approver: &Approver,
    reason: &str,
    verdict: Verdict,
    decided: &Decided,
    subject: (&str, &str),
    resource_id: String,
) -> NewEvent {
    let mut properties = vec![
        (subject.0.to_string(), subject.1.to_string()),
        ("decision".to_string(), verdict.as_str().to_string()),
        ("reason".to_string(), reason.to_string()),
        ("released".to_string(), matches!(decided, Decided::Released).to_string()),
    ];
    if let Decided::Counted { approvals, needed } = decided {
        properties.push(("approvals".to_string(), approvals.to_string()));
        properties.push(("approvalsNeeded".to_string(), needed.to_string()));
    }
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        time: now_millis(),
        operation: APPROVE.to_string(),
        status: verdict.as_str().to_string(),
        sub_status: String::new(),
        caller: caller_of(&approver.principal),
        correlation_id: subject.1.to_string(),
        resource_id,
        properties: string_properties(properties),
    }
}
