//! Saved commands (an extension): `PUT|GET|DELETE {scope}/providers/Microsoft.ContainerService/
//! savedCommands/{name}`, their list, and `POST …/managedClusters/{name}/runSavedCommand`, which
//! runs one as an ordinary command of the cluster with its parameters as environment variables.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::clusters;
use super::commands::{accept, asker_of, input_refusal, principal_of, request_timeout, submit_checks};
use crate::arm::ApiError;
use crate::arm::path::{self, Route};
use crate::arm::refusal::ExtensionRefusal;
use crate::arm::wire::{DocumentResource, ListResult, RunSavedCommandRequest, SystemData};
use crate::dispatcher::{Ask, Refused, SavedInvocation};
use crate::identity::Caller;
use crate::resource::{ClusterRef, ScopeRef};
use crate::saved_command::Invalid;
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::{DocumentKind, DocumentRecord};
use crate::time::{now_millis, rfc3339};

const TYPE: &str = "Microsoft.ContainerService/savedCommands";

fn resource_id(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.ContainerService/savedCommands/{name}")
}

fn not_found(name: &str) -> ApiError {
    ExtensionRefusal::SavedCommand(name.to_string()).into()
}

fn invalid(e: Invalid) -> ApiError {
    ApiError::invalid(e.property, e.message)
}

/// The resource as the wire shows it.
fn render(record: &DocumentRecord) -> DocumentResource {
    let d = &record.document;
    let mut properties = d.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    properties.insert("provisioningState".into(), "Succeeded".into());
    let field = |name: &str| d.get(name).cloned().unwrap_or(Value::Null);
    DocumentResource {
        id: resource_id(&record.scope, &record.name),
        name: record.name.clone(),
        kind: TYPE.into(),
        properties,
        system_data: Some(SystemData {
            created_at: rfc3339(record.created_at),
            created_by: field("createdBy"),
            last_modified_at: rfc3339(record.updated_at),
            last_modified_by: field("lastModifiedBy"),
        }),
    }
}

pub(crate) async fn put(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &ScopeRef,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if let ScopeRef::Group(group) = scope {
        clusters::ensure_group(app, group).await?;
    }
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let properties = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("properties", "'properties' must be an object with at least 'script'."))?;
    let saved = app.saved_commands.get(properties).await.map_err(invalid)?;
    if saved.context.is_some() {
        submit_checks(app).context(saved.context.clone()).await.map_err(|e| match e {
            Refused::Context(e) => ApiError::invalid("properties.context", e.to_string()),
            other => input_refusal(other),
        })?;
    }
    let kept: Map<String, Value> = ["description", "script", "parameters", "timeoutInSeconds", "context", "runAs"]
        .into_iter()
        .filter_map(|k| properties.get(k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone())))
        .collect();
    let scope_id = scope.id();
    let existing = app.store.documents().get_document(DocumentKind::SavedCommand, &scope_id, name).await?;
    let who = principal_of(caller);
    let created_by = existing.as_ref().and_then(|e| e.document.get("createdBy").cloned()).unwrap_or(json!(who));
    let now = now_millis();
    let record = DocumentRecord {
        kind: DocumentKind::SavedCommand,
        scope: scope_id,
        name: name.to_string(),
        document: json!({"properties": kept, "createdBy": created_by, "lastModifiedBy": who})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        created_at: now,
        updated_at: now,
    };
    let put = app.store.documents().put_document(record).await?;
    tracing::info!(saved_command = %resource_id(&put.value.scope, &put.value.name), principal = who, created = put.created, "saved command written");
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &render(&put.value)))
}

pub(crate) async fn get(app: &AppState, scope: &ScopeRef, name: &str) -> Result<Response, ApiError> {
    let found = app.store.documents().get_document(DocumentKind::SavedCommand, &scope.id(), name).await?;
    Ok(json(StatusCode::OK, &render(&found.ok_or_else(|| not_found(name))?)))
}

pub(crate) async fn delete(app: &AppState, scope: &ScopeRef, name: &str) -> Result<Response, ApiError> {
    let deleted = app.store.documents().delete_document(DocumentKind::SavedCommand, &scope.id(), name).await?;
    Ok(if deleted { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
}

pub(crate) async fn list(app: &AppState, scope: &ScopeRef) -> Result<Response, ApiError> {
    let records = app.store.documents().list_documents(DocumentKind::SavedCommand, Some(&scope.id())).await?;
    let value: Vec<DocumentResource> = records.iter().map(render).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

/// `POST …/runSavedCommand` with `{"savedCommand": "<id>", "parameters"?, "clusterToken"?,
/// "timeoutInSeconds"?}`: 202 and the `Location` of an ordinary `commandResults/{id}`.
/// `disableRunCommand` does not stop it: that switch is about free-form commands.
pub(crate) async fn run(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster_ref: &ClusterRef,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = clusters::load(app, cluster_ref).await?;
    let body: RunSavedCommandRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let Some(reference) = body.saved_command.as_deref() else {
        return Err(ApiError::invalid("savedCommand", "'savedCommand' is required: the id of a saved command."));
    };
    let asker = asker_of(caller);
    let invocation = Invocation {
        reference,
        target: "savedCommand",
        parameters_at: "",
        parameters: body.parameters.as_ref(),
        protected: None,
        cluster_token: body.cluster_token,
        timeout: request_timeout(body.timeout_in_seconds.as_ref())?,
    };
    let ask = saved_ask(app, cluster_ref, &asker, invocation).await?;
    accept(app, ctx, &cluster, ask, &asker).await
}

/// A saved command to run on a cluster, as a request names it.
pub(super) struct Invocation<'a> {
    /// The saved command's id.
    pub reference: &'a str,
    /// The request property that names it, for errors.
    pub target: &'static str,
    /// Where `parameters` and `protectedParameters` sit in the request, for errors (`""` at
    /// its top).
    pub parameters_at: &'static str,
    pub parameters: Option<&'a Value>,
    /// Values that must stay secret: each must be a secret parameter of the saved command, so it
    /// is kept only in memory until the command runs and never shown.
    pub protected: Option<&'a Map<String, Value>>,
    pub cluster_token: Option<String>,
    pub timeout: Option<std::time::Duration>,
}

/// The submission of a saved command on `cluster_ref`: it must exist in a scope that holds the
/// cluster, and its parameters bind.
pub(super) async fn saved_ask(
    app: &AppState,
    cluster_ref: &ClusterRef,
    asker: &crate::dispatcher::Asker,
    invocation: Invocation<'_>,
) -> Result<Ask, ApiError> {
    let (reference, target, at) = (invocation.reference, invocation.target, invocation.parameters_at);
    let invalid = |e: Invalid| ApiError::invalid(format!("{at}{}", e.property), e.message);
    let (scope, name) = match path::parse(reference).map(|p| p.route) {
        Some(Ok(Route::SavedCommand(scope, name))) => (scope, name),
        _ => {
            return Err(ApiError::invalid(
                target,
                format!(
                    "'{reference}' is not a saved command id ({{scope}}/providers/Microsoft.ContainerService/savedCommands/{{name}})."
                ),
            ));
        }
    };
    if !scope.contains(cluster_ref) {
        return Err(ApiError::invalid(
            target,
            format!("The saved command '{name}' belongs to '{}', which does not contain this cluster.", scope.id()),
        ));
    }
    let record =
        app.store.documents().get_document(DocumentKind::SavedCommand, &scope.id(), &name).await?.ok_or_else(|| {
            ApiError::invalid(target, format!("No saved command '{name}' exists in '{}'.", scope.id()))
        })?;
    let properties = record.document.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let saved = app
        .saved_commands
        .get(&properties)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored saved command {name} is unreadable: {e}")))?;
    let mut values = match invocation.parameters {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{at}parameters"),
                "'parameters' must be an object of parameter values.",
            ));
        }
    };
    for (key, value) in invocation.protected.into_iter().flatten() {
        if values.insert(key.clone(), value.clone()).is_some() {
            return Err(ApiError::invalid(
                format!("{at}protectedParameters.{key}"),
                format!("'{key}' is given both in parameters and in protectedParameters."),
            ));
        }
    }
    let bound = saved.bind(Some(&Value::Object(values))).map_err(invalid)?;
    if let Some(exposed) =
        invocation.protected.into_iter().flatten().map(|(k, _)| k).find(|k| !bound.secret.iter().any(|(s, _)| s == *k))
    {
        return Err(ApiError::invalid(
            format!("{at}protectedParameters.{exposed}"),
            format!(
                "'{exposed}' is not a secret parameter of the saved command '{name}', so its value would be stored and \
                 shown with the command: pass it in parameters, or declare it secret in the saved command."
            ),
        ));
    }
    let last_writer = record.document.get("lastModifiedBy").and_then(Value::as_str);
    Ok(Ask {
        free_form: false,
        written_by_asker: last_writer.is_none_or(|writer| writer == asker.principal),
        command: saved.script.clone(),
        context: saved.context.clone(),
        cluster_token: invocation.cluster_token,
        timeout: invocation.timeout,
        saved: Some(SavedInvocation {
            id: resource_id(&record.scope, &record.name),
            timeout: saved.timeout,
            environment: bound.plain,
            secrets: bound.secret,
            run_as: saved.run_as.clone(),
        }),
    })
}
