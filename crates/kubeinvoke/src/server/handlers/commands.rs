//! runCommand and commandResults: the asynchronous pattern of docs/contract.md §4.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::clusters;
use crate::arm::ApiError;
use crate::arm::wire::{RunCommandRequest, RunCommandResult, cluster_id};
use crate::cluster_settings::Refusal;
use crate::command::{CommandId, CommandRecord};
use crate::dispatcher::{Ask, Asker, NotAdmitted, Refused, SubmitChecks, TokenRefusal};
use crate::identity::Caller;
use crate::resource::ClusterRef;
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body, json_bytes};
use crate::store::ClusterRecord;
use crate::time::now_millis;

/// `POST …/runCommand`: validate everything now, store the command, answer 202 + Location.
pub(crate) async fn run(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let request: RunCommandRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let command = request
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("command", "The 'command' property is required and must not be empty."))?;
    let ask = Ask {
        free_form: true,
        written_by_asker: false,
        command,
        context: request.context,
        cluster_token: request.cluster_token,
        timeout: request_timeout(request.timeout_in_seconds.as_ref())?,
        saved: None,
    };
    accept(app, ctx, &cluster, ask, &asker_of(caller)).await
}

/// Submits a parsed command and answers 202 with the `Location` of its result.
pub(super) async fn accept(
    app: &AppState,
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    ask: Ask,
    asker: &Asker,
) -> Result<Response, ApiError> {
    let id = submit(app, cluster, ask, asker).await?;
    let mut response = StatusCode::ACCEPTED.into_response();
    add_polling_headers(app, ctx, &mut response, &result_path(cluster, &id));
    Ok(response)
}

/// Submits a parsed command through every check a submission meets (the cluster's switches,
/// approvals, the caller's token, the queue); its id.
pub(super) async fn submit(
    app: &AppState,
    cluster: &ClusterRecord,
    ask: Ask,
    asker: &Asker,
) -> Result<CommandId, ApiError> {
    let saved_command = ask.saved.as_ref().map(|saved| saved.id.clone());
    let checks = submit_checks(app);
    let id = app.dispatcher.submit_asked(cluster, ask, asker, &checks).await.map_err(|e| refusal(app, cluster, e))?;
    let cluster_id = cluster_id(&cluster.subscription, &cluster.group, &cluster.name);
    tracing::info!(command_id = %id, principal = asker.principal, cluster = %cluster_id, saved_command, "command accepted");
    Ok(id)
}

/// What the submit use case checks with: this server's token issuer(s) and context limits.
pub(super) fn submit_checks(app: &AppState) -> SubmitChecks<'_> {
    SubmitChecks { tokens: app.identity.as_ref(), context_limits: app.config.exec.context }
}

/// `timeoutInSeconds` of a request body: it may only lower the limits (the executor takes the
/// smallest of the server's, the cluster's and this one).
pub(super) fn request_timeout(value: Option<&serde_json::Value>) -> Result<Option<std::time::Duration>, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => crate::saved_command::timeout_seconds(value).map(Some).ok_or_else(|| {
            ApiError::invalid(
                "timeoutInSeconds",
                format!(
                    "'timeoutInSeconds' must be a whole number from 1 to {}; it can only lower the server's and the cluster's limits.",
                    crate::saved_command::MAX_TIMEOUT_SECONDS
                ),
            )
        }),
    }
}

/// Who submits, as the use case records and checks them.
pub(super) fn asker_of(caller: &Caller) -> Asker {
    Asker {
        principal: principal_of(caller),
        object_id: caller.claims.oid.clone(),
        tenant_id: caller.claims.tid.clone(),
    }
}

/// How commands and runs name who submitted them: `appId (objectId)`.
pub(super) fn principal_of(caller: &Caller) -> String {
    format!("{} ({})", caller.claims.app_id(), caller.claims.oid)
}

/// A refused submission as the API answers it (docs/contract.md).
pub(super) fn refusal(app: &AppState, cluster: &ClusterRecord, refused: Refused) -> ApiError {
    match refused {
        Refused::NotAdmitted(NotAdmitted::InvalidSetting(e)) => ApiError::invalid(e.property, e.message),
        Refused::NotAdmitted(NotAdmitted::Cluster(Refusal::RunCommandDisabled)) => {
            ApiError::RunCommandDisabled(cluster.name.clone())
        }
        Refused::NotAdmitted(NotAdmitted::Cluster(Refusal::ClusterTokenRequired)) => ApiError::MissingAadClusterToken,
        Refused::RunAsOnAadCluster => ApiError::invalid(
            "savedCommand",
            "The saved command names properties.runAs, but this cluster is AAD-managed: its commands act as their caller.",
        ),
        Refused::QueueFull(full) => {
            ApiError::QueueFull { queued: full.queued, retry_after: app.config.retry_after_secs.max(1) }
        }
        other => input_refusal(other),
    }
}

/// A refusal of the checks every submission shares (the caller's token, the attached files), as
/// the API answers it; what only admission or the queue refuse does not come from these checks.
pub(super) fn input_refusal(refused: Refused) -> ApiError {
    match refused {
        Refused::ClusterToken(TokenRefusal::Invalid(e)) => ApiError::invalid(
            "clusterToken",
            format!("'clusterToken' is not valid for the AKS AAD server application: {e}"),
        ),
        Refused::ClusterToken(TokenRefusal::NotTheCallers) => ApiError::invalid(
            "clusterToken",
            "'clusterToken' belongs to another principal (its oid is not the caller's): a command acts only as the \
             principal that submits it",
        ),
        Refused::Context(e) => ApiError::invalid("context", e.to_string()),
        Refused::Store(e) => e.into(),
        other => ApiError::internal(anyhow::anyhow!("{other}")),
    }
}

/// `GET …/commandResults/{id}`: 202 with a body while in progress, 200 when finished. A read
/// of a command running on this server first waits up to `--result-wait` for it to end.
pub(crate) async fn result(
    app: &AppState,
    ctx: &RequestContext,
    cluster_ref: &ClusterRef,
    id: &CommandId,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let mut unfinished = match finished_result(app, &cluster, id).await? {
        Progress::Finished(response) => return Ok(response),
        Progress::Unfinished(record) => record,
    };
    if app.dispatcher.wait_for_result(id, app.config.result_wait).await {
        match finished_result(app, &cluster, id).await? {
            Progress::Finished(response) => return Ok(response),
            Progress::Unfinished(record) => unfinished = record,
        }
    }
    let body = RunCommandResult::from(&unfinished);
    let mut response = json(StatusCode::ACCEPTED, &body);
    add_polling_headers(app, ctx, &mut response, &result_path(&cluster, id));
    Ok(response)
}

/// Where a command is: finished (its 200, rendered once and kept), or not yet.
enum Progress {
    Finished(Response),
    Unfinished(CommandRecord),
}

async fn finished_result(app: &AppState, cluster: &ClusterRecord, id: &CommandId) -> Result<Progress, ApiError> {
    if let Some(body) = app.rendered.get(&cluster.uid, id, now_millis()) {
        return Ok(Progress::Finished(json_bytes(StatusCode::OK, body)));
    }
    let record = command_of(app, cluster, id).await?;
    if !record.state.is_terminal() {
        return Ok(Progress::Unfinished(record));
    }
    let body = bytes::Bytes::from(serde_json::to_vec(&RunCommandResult::from(&record)).map_err(ApiError::internal)?);
    app.rendered.keep(&cluster.uid, &record, body.clone());
    Ok(Progress::Finished(json_bytes(StatusCode::OK, body)))
}

/// A command of a cluster that has not expired: 404 for a missing group, cluster or command.
/// Commands are looked up through their cluster, so one cluster's path never shows another's.
pub(crate) async fn load(
    app: &AppState,
    cluster_ref: &ClusterRef,
    id: &CommandId,
) -> Result<(ClusterRecord, CommandRecord), ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let record = command_of(app, &cluster, id).await?;
    Ok((cluster, record))
}

async fn command_of(app: &AppState, cluster: &ClusterRecord, id: &CommandId) -> Result<CommandRecord, ApiError> {
    let found = app.store.commands().get_command(&cluster.uid, id, now_millis()).await?;
    found.ok_or_else(|| ApiError::CommandNotFound(id.to_string()))
}

pub(crate) fn result_path(cluster: &ClusterRecord, id: &CommandId) -> String {
    format!("{}/commandResults/{id}", cluster_id(&cluster.subscription, &cluster.group, &cluster.name))
}

/// `Location` (absolute, same api-version) and `Retry-After`; never `Azure-AsyncOperation`.
pub(super) fn add_polling_headers(app: &AppState, ctx: &RequestContext, response: &mut Response, path: &str) {
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&ctx.url(path)) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(app.config.retry_after_secs));
}
