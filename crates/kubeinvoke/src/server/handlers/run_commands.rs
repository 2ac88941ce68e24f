//! Run commands as ARM resources (an extension, in the shape of VM Run Command v2):
//! `PUT|GET|DELETE …/managedClusters/{name}/runCommands/{runCommandName}` and their list, so IaC
//! tools that understand resources, not actions, can run a command and read its output.
//!
//! A resource runs an ordinary command of its cluster — through the very submission runCommand
//! and runSavedCommand use, so `disableRunCommand`, approvals and saved-command-only roles hold —
//! and names it in `instanceView.commandId` (history, live logs, cancel and `az aks command
//! result` work on it). A PUT whose source, parameters or timeout changed runs it again; one that
//! changed nothing does not. `provisioningState` is not terminal until the command ends (at once
//! with `asyncExecution`); `Failed` when the command failed and `treatFailureAsDeploymentFailure`
//! is set. Protected parameters are secret parameters of the saved command: never stored, shown
//! or logged, only fingerprinted to tell a change.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json as json_value};
use sha2::{Digest, Sha256};

use super::clusters;
use super::commands::{asker_of, principal_of, request_timeout, submit};
use super::saved::{Invocation, saved_ask};
use crate::arm::ApiError;
use crate::arm::wire::cluster_id;
use crate::command::{CommandId, CommandRecord, CommandState};
use crate::dispatcher::{Ask, Cancel};
use crate::identity::Caller;
use crate::resource::ClusterRef;
use crate::server::AppState;
use crate::server::permissions::{RUN_COMMAND, RUN_SAVED_COMMAND};
use crate::server::request::{RequestContext, json, json_body};
use crate::store::{ClusterRecord, DocumentKind, DocumentRecord};
use crate::time::{now_millis, rfc3339};

const TYPE: &str = "Microsoft.ContainerService/managedClusters/runCommands";
/// Properties a client may write; the rest of `properties` is the server's.
const WRITABLE: [&str; 4] = ["source", "asyncExecution", "timeoutInSeconds", "treatFailureAsDeploymentFailure"];

fn resource_id(cluster: &ClusterRecord, name: &str) -> String {
    format!("{}/runCommands/{name}", cluster_id(&cluster.subscription, &cluster.group, &cluster.name))
}

fn scope_of(cluster: &ClusterRecord) -> String {
    cluster_id(&cluster.subscription, &cluster.group, &cluster.name)
}

fn not_found(name: &str) -> ApiError {
    crate::arm::refusal::ExtensionRefusal::RunCommand(name.to_string()).into()
}

/// What a PUT asks to run, checked: the source and what decides whether it changed.
struct Source {
    /// The stored `properties.source`, without protected values.
    stored: Map<String, Value>,
    saved_command: Option<String>,
    script: Option<String>,
    parameters: Option<Value>,
    protected: Option<Map<String, Value>>,
    timeout: Option<Value>,
}

impl Source {
    fn parse(properties: &Map<String, Value>) -> Result<Source, ApiError> {
        let source = match properties.get("source") {
            Some(Value::Object(source)) => source,
            _ => {
                return Err(ApiError::invalid(
                    "properties.source",
                    "'properties.source' is required: {\"script\": \"…\"} or {\"savedCommandId\": \"…\"}.",
                ));
            }
        };
        let text = |field: &str| -> Result<Option<String>, ApiError> {
            match source.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::invalid(
                    format!("properties.source.{field}"),
                    format!("'properties.source.{field}' must be a non-empty string."),
                )),
            }
        };
        let (script, saved_command) = (text("script")?, text("savedCommandId")?);
        if script.is_some() == saved_command.is_some() {
            return Err(ApiError::invalid(
                "properties.source",
                "'properties.source' takes exactly one of 'script' and 'savedCommandId'.",
            ));
        }
        if let Some(unknown) = source
            .keys()
            .find(|k| !["script", "savedCommandId", "parameters", "protectedParameters"].contains(&k.as_str()))
        {
            return Err(ApiError::invalid(
                format!("properties.source.{unknown}"),
                format!("'properties.source' has no property '{unknown}'."),
            ));
        }
        let parameters = source.get("parameters").filter(|v| !v.is_null()).cloned();
        let protected = match source.get("protectedParameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(values)) => Some(values.clone()),
            Some(_) => {
                return Err(ApiError::invalid(
                    "properties.source.protectedParameters",
                    "'properties.source.protectedParameters' must be an object of parameter values.",
                ));
            }
        };
        if script.is_some() && (parameters.is_some() || protected.is_some()) {
            return Err(ApiError::invalid(
                "properties.source.parameters",
                "A script takes no parameters: parameters and protectedParameters go with a savedCommandId.",
            ));
        }
        let mut stored = source.clone();
        stored.remove("protectedParameters");
        let timeout = properties.get("timeoutInSeconds").filter(|v| !v.is_null()).cloned();
        Ok(Source { stored, saved_command, script, parameters, protected, timeout })
    }

    /// Changes whenever what runs changes; protected values enter only hashed.
    fn fingerprint(&self) -> String {
        let what = json_value!({
            "source": self.stored,
            "protected": self.protected,
            "timeout": self.timeout,
        });
        format!("{:x}", Sha256::digest(what.to_string().as_bytes()))
    }
}

fn flag(properties: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match properties.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => {
            Err(ApiError::invalid(format!("properties.{name}"), format!("'properties.{name}' must be true or false.")))
        }
    }
}

/// `PUT …/runCommands/{name}`.
pub(crate) async fn put(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let Some(properties) = body.get("properties").and_then(Value::as_object) else {
        return Err(ApiError::invalid("properties", "'properties' is required and must be a JSON object."));
    };
    let source = Source::parse(properties)?;
    let async_execution = flag(properties, "asyncExecution")?;
    flag(properties, "treatFailureAsDeploymentFailure")?;
    let timeout = request_timeout(source.timeout.as_ref())
        .map_err(|_| ApiError::invalid("properties.timeoutInSeconds", timeout_message()))?;
    // A resource write is no way around a run right: it needs the one its source needs too.
    let scope = scope_of(&cluster);
    caller.require(if source.script.is_some() { RUN_COMMAND } else { RUN_SAVED_COMMAND }, &scope)?;

    let existing = app.store.documents().get_document(DocumentKind::RunCommand, &scope, name).await?;
    let fingerprint = source.fingerprint();
    let unchanged =
        existing.as_ref().filter(|e| e.document.get("fingerprint").and_then(Value::as_str) == Some(&fingerprint));
    let command_id = match unchanged.and_then(|e| e.document.get("commandId")).and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => {
            let asker = asker_of(caller);
            let ask = match (&source.script, &source.saved_command) {
                (Some(script), _) => Ask {
                    free_form: true,
                    written_by_asker: false,
                    command: script.clone(),
                    context: None,
                    cluster_token: None,
                    timeout,
                    saved: None,
                },
                (None, Some(reference)) => {
                    let invocation = Invocation {
                        reference,
                        target: "properties.source.savedCommandId",
                        parameters_at: "properties.source.",
                        parameters: source.parameters.as_ref(),
                        protected: source.protected.as_ref(),
                        cluster_token: None,
                        timeout,
                    };
                    saved_ask(app, cluster_ref, &asker, invocation).await?
                }
                (None, None) => unreachable!("Source::parse requires one"),
            };
            submit(app, &cluster, ask, &asker).await?.to_string()
        }
    };

    let mut written: Map<String, Value> =
        WRITABLE.iter().filter_map(|k| properties.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
    written.insert("source".into(), Value::Object(source.stored));
    let now = now_millis();
    let mut document = Map::new();
    let location = match body.get("location").and_then(Value::as_str) {
        Some(given) if !given.trim().is_empty() => crate::resource::location::normalize(given).into(),
        _ => cluster_location(&cluster),
    };
    document.insert("location".into(), location);
    if let Some(tags) = body.get("tags").filter(|t| t.is_object()) {
        document.insert("tags".into(), tags.clone());
    }
    document.insert("properties".into(), Value::Object(written));
    document.insert("fingerprint".into(), fingerprint.into());
    document.insert("commandId".into(), command_id.into());
    document.insert("asyncExecution".into(), async_execution.into());
    let principal = principal_of(caller);
    let created_by =
        existing.as_ref().and_then(|e| e.document.get("createdBy").cloned()).unwrap_or(principal.clone().into());
    document.insert("createdBy".into(), created_by);
    document.insert("lastModifiedBy".into(), principal.into());
    let record = DocumentRecord {
        kind: DocumentKind::RunCommand,
        scope,
        name: name.to_string(),
        document,
        created_at: now,
        updated_at: now,
    };
    let put = app.store.documents().put_document(record).await?;
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(answer(app, status, render(app, &cluster, &put.value).await?))
}

/// The resource; while it deploys, with `Retry-After`, which ARM clients' pollers wait for.
fn answer(app: &AppState, status: StatusCode, resource: Value) -> Response {
    let deploying = !["Succeeded", "Failed", "Canceled"]
        .contains(&resource["properties"]["provisioningState"].as_str().unwrap_or(""));
    let mut response = json(status, &resource);
    if deploying {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(app.config.retry_after_secs.max(1)));
    }
    response
}

fn timeout_message() -> String {
    format!(
        "'properties.timeoutInSeconds' must be a whole number from 1 to {}; it can only lower the server's and the cluster's limits.",
        crate::saved_command::MAX_TIMEOUT_SECONDS
    )
}

fn cluster_location(cluster: &ClusterRecord) -> Value {
    cluster.document.get("location").cloned().unwrap_or(Value::Null)
}

/// `GET …/runCommands/{name}`.
pub(crate) async fn get(app: &AppState, cluster_ref: &ClusterRef, name: &str) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let record = app
        .store
        .documents()
        .get_document(DocumentKind::RunCommand, &scope_of(&cluster), name)
        .await?
        .ok_or_else(|| not_found(name))?;
    Ok(answer(app, StatusCode::OK, render(app, &cluster, &record).await?))
}

/// `GET …/runCommands`.
pub(crate) async fn list(app: &AppState, cluster_ref: &ClusterRef) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let records = app.store.documents().list_documents(DocumentKind::RunCommand, Some(&scope_of(&cluster))).await?;
    let mut value = Vec::with_capacity(records.len());
    for record in &records {
        value.push(render(app, &cluster, record).await?);
    }
    Ok(json(StatusCode::OK, &json_value!({ "value": value })))
}

/// `DELETE …/runCommands/{name}`: cancels its command if it still runs, then forgets the
/// resource (the command's result stays in the history until it expires).
pub(crate) async fn delete(
    app: &AppState,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    name: &str,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let scope = scope_of(&cluster);
    let Some(record) = app.store.documents().get_document(DocumentKind::RunCommand, &scope, name).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if let Some(id) = record.document.get("commandId").and_then(Value::as_str) {
        match app.dispatcher.cancel_command(&cluster.uid, &CommandId::from_text(id), caller.claims.app_id()).await? {
            Cancel::Done => {
                tracing::info!(command_id = id, run_command = name, "run command deleted: its command is canceled")
            }
            Cancel::NotFound | Cancel::AlreadyFinished(_) => {}
        }
    }
    app.store.documents().delete_document(DocumentKind::RunCommand, &scope, name).await?;
    Ok(StatusCode::OK.into_response())
}

/// The resource with its instance view, read from its command now.
async fn render(app: &AppState, cluster: &ClusterRecord, record: &DocumentRecord) -> Result<Value, ApiError> {
    let d = &record.document;
    let command_id = d.get("commandId").and_then(Value::as_str).map(CommandId::from_text);
    let command = match &command_id {
        Some(id) => app.store.commands().get_command(&cluster.uid, id, now_millis()).await?,
        None => None,
    };
    let mut properties = d.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let async_execution = d.get("asyncExecution").and_then(Value::as_bool).unwrap_or(false);
    let fail_deployment = properties.get("treatFailureAsDeploymentFailure").and_then(Value::as_bool).unwrap_or(false);
    let state =
        provisioning_state(command.as_ref(), async_execution, fail_deployment, record.created_at == record.updated_at);
    properties.insert("provisioningState".into(), state.into());
    properties.insert("instanceView".into(), instance_view(command.as_ref(), command_id.as_ref()));
    let field = |name: &str| d.get(name).cloned().unwrap_or(Value::Null);
    let mut resource = json_value!({
        "id": resource_id(cluster, &record.name),
        "name": record.name,
        "type": TYPE,
        "location": field("location"),
        "properties": properties,
        "systemData": {
            "createdAt": rfc3339(record.created_at),
            "createdBy": field("createdBy"),
            "lastModifiedAt": rfc3339(record.updated_at),
            "lastModifiedBy": field("lastModifiedBy"),
        },
    });
    if let Some(tags) = d.get("tags") {
        resource["tags"] = tags.clone();
    }
    Ok(resource)
}

/// ARM's view of the deployment: not terminal while the command has not ended (unless it runs
/// asynchronously), `Failed` only when asked to treat a failed command so.
fn provisioning_state(
    command: Option<&CommandRecord>,
    async_execution: bool,
    fail_deployment: bool,
    first_run: bool,
) -> &'static str {
    let Some(command) = command else {
        // Its result expired (or its cluster's history was purged): what ran is no longer known,
        // but the deployment was made.
        return "Succeeded";
    };
    match command.state {
        _ if async_execution => "Succeeded",
        state if state.is_terminal() && fail_deployment && failed(command) => "Failed",
        state if state.is_terminal() => "Succeeded",
        _ if first_run => "Creating",
        _ => "Updating",
    }
}

/// Whether the command did not do what it was asked: it exited non-zero, or never ran to its end.
fn failed(command: &CommandRecord) -> bool {
    match command.state {
        CommandState::Succeeded => command.exit_code != Some(0),
        state => state.is_terminal(),
    }
}

/// VM Run Command v2's `instanceView`, from the command's record.
fn instance_view(command: Option<&CommandRecord>, command_id: Option<&CommandId>) -> Value {
    let Some(command) = command else {
        return json_value!({ "executionState": "Unknown", "commandId": command_id.map(|id| id.to_string()) });
    };
    let timed_out = command.reason.as_deref() == Some("Timeout");
    let execution_state = match command.state {
        CommandState::PendingApproval | CommandState::Accepted => "Pending",
        CommandState::Running => "Running",
        CommandState::Succeeded if failed(command) => "Failed",
        CommandState::Succeeded => "Succeeded",
        CommandState::Failed if timed_out => "TimedOut",
        CommandState::Failed => "Failed",
        CommandState::Canceled => "Canceled",
    };
    json_value!({
        "executionState": execution_state,
        "exitCode": command.exit_code,
        "output": command.logs.clone().unwrap_or_default(),
        "error": command.reason.clone().unwrap_or_default(),
        "startTime": command.started_at.map(rfc3339),
        "endTime": command.finished_at.map(rfc3339),
        "commandId": command.id.to_string(),
    })
}
