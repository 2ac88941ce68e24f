//! Fan-out runs (an extension under ARM's conventions): submit one command to the clusters of a
//! scope chosen by tags or ids, read a run, list runs, cancel one. The driver does the running.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::clusters;
use super::commands::{add_polling_headers, asker_of, input_refusal, principal_of, submit_checks};
use crate::approval::ApprovalPolicy;
use crate::arm::ApiError;
use crate::arm::fanout::{CommandRun, CommandRunTarget, FanOutRequest, MAX_TARGETS, Targets};
use crate::arm::wire::{ListResult, cluster_id};
use crate::dispatcher::admit_target;
use crate::fanout::{NewRun, NewTarget, RunId, RunRecord, RunScope, skip};
use crate::identity::Caller;
use crate::resource::ScopeRef;
use crate::server::AppState;
use crate::server::permissions::{RUN_COMMAND, RUNS_CANCEL, RUNS_READ};
use crate::server::request::{RequestContext, json, json_body};
use crate::store::{ClusterRecord, TargetWindow};
use crate::time::now_millis;

const DEFAULT_PAGE: usize = 20;
const CLUSTER_READ: &str = "Microsoft.ContainerService/managedClusters/read";
const MAX_PAGE: usize = 100;
/// Targets a run is shown with (the rest through `targetsNextLink`), and per page of them.
const TARGET_PAGE: usize = 100;
/// What a run is read with to be shown ([`shown`]): its first [`TARGET_PAGE`] targets.
pub(super) const SHOWN_TARGETS: TargetWindow = TargetWindow::Page { after: None, limit: TARGET_PAGE };
/// The largest page of targets a reader may ask for (`$top`).
const MAX_TARGET_PAGE: usize = 1000;

/// `POST {scope}/providers/Microsoft.ContainerService/runCommand`: 202 + `Location` of the run.
pub(crate) async fn submit(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    body: Body,
) -> Result<Response, ApiError> {
    if let ScopeRef::Group(group) = scope {
        clusters::ensure_group(app, group).await?;
    }
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let request = FanOutRequest::from_json(body)?;
    let checks = submit_checks(app);
    let cluster_token = match &request.cluster_token {
        Some(token) => Some(checks.cluster_token(token, &asker_of(caller)).await.map_err(input_refusal)?),
        None => None,
    };
    let (targets, policies) = select(app, caller, scope, &request.targets, cluster_token.is_some()).await?;
    // Approved once, as a whole, under the strictest policy of the clusters that hold it.
    let hold = crate::approval::strictest(policies).map(|policy| policy.hold(&caller.claims.oid, now_millis()));
    let context = checks.context(request.context).await.map_err(input_refusal)?;
    let run_scope = RunScope::new(scope.id());
    let run = NewRun {
        id: RunId::generate(),
        scope: run_scope.clone(),
        command: request.command,
        context,
        cluster_token,
        max_concurrency: request.max_concurrency,
        max_errors: request.max_errors,
        created_at: now_millis(),
        created_by: principal_of(caller),
        targets,
        hold,
    };
    let id = run.id.clone();
    let selected = run.targets.len();
    let skipped = run.targets.iter().filter(|t| t.skipped.is_some()).count();
    app.store.runs().insert_run(run, &app.dispatcher.lease_from(now_millis())).await?;
    app.runs.wake();
    tracing::info!(run_id = %id, principal = principal_of(caller), scope = %run_scope.id, selected, skipped, "fan-out run accepted");
    respond(app, ctx, &load(app, scope, &id).await?)
}

/// `GET …/commandRuns/{id}`: 202 while targets remain, 200 once the run has ended.
pub(crate) async fn get(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    id: &RunId,
) -> Result<Response, ApiError> {
    let run = authorized(app, caller, scope, id, RUNS_READ, SHOWN_TARGETS).await?;
    respond(app, ctx, &run)
}

/// `GET …/commandRuns/{id}/targets?$top=N&$skipToken=…`: the run's targets in selection order,
/// a page at a time, for the reader of the run.
pub(crate) async fn targets(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    id: &RunId,
) -> Result<Response, ApiError> {
    let (limit, after) = ctx.page(TARGET_PAGE, MAX_TARGET_PAGE)?;
    let run = authorized(app, caller, scope, id, RUNS_READ, TargetWindow::Page { after, limit }).await?;
    let next_link = targets_link(ctx, &run, limit);
    let value = run.targets.iter().map(CommandRunTarget::new).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link }))
}

/// Where the targets after those `run` carries are read, `limit` at a time; none after the last.
fn targets_link(ctx: &RequestContext, run: &RunRecord, limit: usize) -> Option<String> {
    let more = run.paged.as_ref().is_some_and(|page| page.more);
    let last = run.targets.last().filter(|_| more)?.position;
    let path = format!("{}/targets", RunScope::new(run.scope.clone()).run_id(&run.id));
    Some(format!("{}&$top={limit}&$skipToken={last}", ctx.url(&path)))
}

/// The run as it is shown: its first targets, the link to the others and the counts of all.
pub(super) fn shown(ctx: &RequestContext, run: &RunRecord) -> CommandRun {
    CommandRun::new(run, targets_link(ctx, run, TARGET_PAGE))
}

/// `GET …/commandRuns?$top=N&$skipToken=…`: newest first.
pub(crate) async fn list(app: &AppState, ctx: &RequestContext, scope: &ScopeRef) -> Result<Response, ApiError> {
    let (top, before) = ctx.page(DEFAULT_PAGE, MAX_PAGE)?;
    let key = RunScope::new(scope.id()).key;
    let mut page = app.store.runs().list_runs(&key, before, top + 1, TARGET_PAGE).await?;
    let next_link = (page.len() > top).then(|| {
        page.truncate(top);
        let last = page.last().expect("a full page").seq;
        format!("{}&$top={top}&$skipToken={last}", ctx.url(&ctx.path))
    });
    let value = page.iter().map(|run| shown(ctx, run)).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link }))
}

/// `POST …/commandRuns/{id}/cancel`: pending targets end `Canceled` at once, started ones are
/// canceled like any command; the run ends `Canceled` when the last of them has.
pub(crate) async fn cancel(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    id: &RunId,
) -> Result<Response, ApiError> {
    let run = authorized(app, caller, scope, id, RUNS_CANCEL, SHOWN_TARGETS).await?;
    if run.state.is_terminal() {
        return Err(ApiError::RunAlreadyFinished { id: id.to_string(), state: run.state.as_str() });
    }
    let by = caller.claims.app_id().to_string();
    let key = RunScope::new(scope.id()).key;
    app.runs.cancel(id, &key, &by).await?.ok_or_else(|| ApiError::RunNotFound(id.to_string()))?;
    tracing::info!(run_id = %id, principal = principal_of(caller), "fan-out run cancel requested");
    respond(app, ctx, &load(app, scope, id).await?)
}

/// The run, if the caller created it or holds `action` on its scope. Without either the answer
/// is 403 whether or not the run exists, so nothing leaks.
async fn authorized(
    app: &AppState,
    caller: &Caller,
    scope: &ScopeRef,
    id: &RunId,
    action: &str,
    window: TargetWindow,
) -> Result<RunRecord, ApiError> {
    let scope_id = scope.id();
    let key = RunScope::new(scope_id.clone()).key;
    let run = app.store.runs().get_run(id, Some(&key), window).await?;
    let creator = run.as_ref().is_some_and(|r| r.created_by == principal_of(caller));
    if !creator {
        caller.require(action, &scope_id)?;
    }
    run.ok_or_else(|| ApiError::RunNotFound(id.to_string()))
}

async fn load(app: &AppState, scope: &ScopeRef, id: &RunId) -> Result<RunRecord, ApiError> {
    let key = RunScope::new(scope.id()).key;
    let run = app.store.runs().get_run(id, Some(&key), SHOWN_TARGETS).await?;
    run.ok_or_else(|| ApiError::RunNotFound(id.to_string()))
}

fn respond(app: &AppState, ctx: &RequestContext, run: &RunRecord) -> Result<Response, ApiError> {
    let body = shown(ctx, run);
    if run.state.is_terminal() {
        return Ok(json(StatusCode::OK, &body));
    }
    let path = body.id.clone();
    let mut response = json(StatusCode::ACCEPTED, &body);
    add_polling_headers(app, ctx, &mut response, &path);
    Ok(response)
}

/// The targets of a run, in a stable order: every selected cluster, those the run may not use
/// marked skipped with the reason; and the approval policies of the clusters that hold its
/// command. An empty selection is the caller's mistake (400).
async fn select(
    app: &AppState,
    caller: &Caller,
    scope: &ScopeRef,
    targets: &Targets,
    has_token: bool,
) -> Result<(Vec<NewTarget>, Vec<ApprovalPolicy>), ApiError> {
    let selected = match targets {
        Targets::Tags(tags) => {
            let clusters = clusters::all_tagged_in(app, scope.subscription(), scope.group(), tags).await?;
            // Clusters the caller cannot even read stay invisible, as in a cluster listing.
            let matching: Vec<(NewTarget, Option<ApprovalPolicy>)> = clusters
                .iter()
                .map(|c| (c, cluster_id(&c.subscription, &c.group, &c.name)))
                .filter(|(_, id)| caller.may(CLUSTER_READ, id))
                .map(|(c, id)| target_for(caller, Some(c), id, has_token))
                .collect();
            if matching.is_empty() {
                let wanted: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(ApiError::invalid(
                    "targets.tags",
                    format!(
                        "No managed cluster in '{}' that the caller may read has the tags {}.",
                        scope.id(),
                        wanted.join(", ")
                    ),
                ));
            }
            matching
        }
        Targets::ClusterIds(ids) => {
            let mut selected = Vec::with_capacity(ids.len());
            for (index, id) in ids.iter().enumerate() {
                if !scope.contains(id) {
                    return Err(ApiError::invalid(
                        "targets.clusterIds",
                        format!("'targets.clusterIds[{index}]' is not inside the run's scope '{}'.", scope.id()),
                    ));
                }
                let found = app.store.clusters().get_cluster(id).await?;
                let arm_id = found.as_ref().map_or_else(
                    || cluster_id(id.subscription.as_str(), id.group.as_str(), id.name.as_str()),
                    |c| cluster_id(&c.subscription, &c.group, &c.name),
                );
                selected.push(target_for(caller, found.as_ref(), arm_id, has_token));
            }
            selected
        }
    };
    if selected.len() > MAX_TARGETS {
        return Err(ApiError::invalid(
            "targets",
            format!("The selection holds {} clusters; a run takes at most {MAX_TARGETS}.", selected.len()),
        ));
    }
    let (targets, policies): (Vec<NewTarget>, Vec<Option<ApprovalPolicy>>) = selected.into_iter().unzip();
    Ok((targets, policies.into_iter().flatten().collect()))
}

/// One selected cluster: runnable (with the approval policy that holds its command, if any), or
/// skipped saying why. Authorization comes first, so a caller learns nothing about clusters they
/// may not use.
fn target_for(
    caller: &Caller,
    cluster: Option<&ClusterRecord>,
    arm_id: String,
    has_token: bool,
) -> (NewTarget, Option<ApprovalPolicy>) {
    let skipped = |reason: &str, detail: String| {
        let target = NewTarget {
            cluster_uid: cluster.map(|c| c.uid.to_string()),
            cluster_id: arm_id.clone(),
            skipped: Some(format!("{reason}: {detail}")),
        };
        (target, None)
    };
    if !caller.may(RUN_COMMAND, &arm_id) {
        return skipped(
            skip::AUTHORIZATION_FAILED,
            format!("the caller '{}' may not perform '{RUN_COMMAND}' on this cluster", caller.claims.app_id()),
        );
    }
    let Some(cluster) = cluster else {
        return skipped(skip::NOT_FOUND, "no managed cluster has this id".into());
    };
    // The same admission as every command's (asked again when the target starts); a target it
    // refuses is skipped, naming why. One its cluster holds makes the run wait for approvers.
    match admit_target(cluster, has_token, true) {
        Err(refused) => {
            let target = NewTarget {
                cluster_uid: Some(cluster.uid.to_string()),
                cluster_id: arm_id,
                skipped: Some(refused.skip_reason()),
            };
            (target, None)
        }
        Ok(admitted) => {
            let target = NewTarget { cluster_uid: Some(cluster.uid.to_string()), cluster_id: arm_id, skipped: None };
            (target, admitted.held_by())
        }
    }
}
