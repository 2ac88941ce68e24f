//! runCommand and commandResults: the asynchronous pattern of docs/contract.md §4.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::clusters;
use crate::arm::ApiError;
use crate::arm::wire::{RunCommandRequest, RunCommandResult, cluster_id};
use crate::azure::AKS_AAD_SERVER_APP;
use crate::cluster_settings::Refusal;
use crate::command::{CommandId, CommandRecord};
use crate::context;
use crate::dispatcher::{Admitted, CommandRequest, NotAdmitted, Refused, admit};
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
    let has_token = request.cluster_token.as_deref().is_some_and(|t| !t.is_empty());
    let admitted = admit(&cluster, true, has_token).map_err(|e| refusal(app, &cluster, e.into()))?;
    let cluster_token = match request.cluster_token.as_deref().filter(|_| admitted.aad_managed()) {
        Some(token) => Some(validate_cluster_token(app, caller, token).await?),
        None => None,
    };
    let command = request
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("command", "The 'command' property is required and must not be empty."))?;
    let context = decode_context(app, request.context).await?;
    let request = CommandRequest {
        command,
        context,
        cluster_token,
        submitted_by: principal_of(caller),
        timeout: request_timeout(request.timeout_in_seconds.as_ref())?,
        saved: None,
    };
    accept(app, ctx, &cluster, admitted, request).await
}

/// Queues a checked command and answers 202 with the `Location` of its result.
pub(super) async fn accept(
    app: &AppState,
    ctx: &RequestContext,
    cluster: &ClusterRecord,
    admitted: Admitted,
    request: CommandRequest,
) -> Result<Response, ApiError> {
    let principal = request.submitted_by.clone();
    let saved_command = request.saved.as_ref().map(|saved| saved.id.clone());
    let id = app.dispatcher.submit_to(admitted, request).await.map_err(|e| refusal(app, cluster, e))?;
    let cluster_id = cluster_id(&cluster.subscription, &cluster.group, &cluster.name);
    tracing::info!(command_id = %id, principal, cluster = %cluster_id, saved_command, "command accepted");

    let mut response = StatusCode::ACCEPTED.into_response();
    add_polling_headers(app, ctx, &mut response, &result_path(cluster, &id));
    Ok(response)
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

/// A caller's token for the AKS AAD server app, checked now (it replaces the admin credentials
/// in the command's kubeconfig, so the command acts as the caller).
/// It must be the caller's own: a token captured from someone else (a log, a fan-out that
/// reached the wrong cluster) is refused even though its signature and audience are good.
pub(super) async fn validate_cluster_token(app: &AppState, caller: &Caller, token: &str) -> Result<String, ApiError> {
    let claims = app.identity.validate(token, &[AKS_AAD_SERVER_APP]).await.map_err(|e| {
        ApiError::invalid(
            "clusterToken",
            format!("'clusterToken' is not valid for the AKS AAD server application: {e}"),
        )
    })?;
    if claims.oid != caller.claims.oid || claims.tid != caller.claims.tid {
        return Err(ApiError::invalid(
            "clusterToken",
            "'clusterToken' belongs to another principal (its oid is not the caller's): a command acts only as the \
             principal that submits it",
        ));
    }
    Ok(token.to_string())
}

/// The attached files (a base64 zip), validated off the async threads (without a hop to them
/// when nothing is attached).
pub(super) async fn decode_context(app: &AppState, raw: Option<String>) -> Result<Vec<u8>, ApiError> {
    let limits = app.config.exec.context;
    let attached = raw.is_some();
    let decode = move || context::decode(raw.as_deref(), limits);
    let decoded = match attached {
        true => tokio::task::spawn_blocking(decode).await.map_err(ApiError::internal)?,
        false => decode(),
    };
    decoded.map_err(|e| ApiError::invalid("context", e.to_string()))
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
        Refused::QueueFull(full) => {
            ApiError::QueueFull { queued: full.queued, retry_after: app.config.retry_after_secs.max(1) }
        }
        Refused::Store(e) => e.into(),
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
