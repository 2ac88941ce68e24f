//! Managed clusters: registration (with a write-only kubeconfig), reads, lists and credentials.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json as json_value};

use crate::arm::ApiError;
use crate::arm::wire::{CredentialResult, CredentialResults, ListResult, cluster_id, managed_cluster};
use crate::cluster_settings::ClusterSettings;
use crate::context;
use crate::executor::ExecutorKind;
use crate::identity::Caller;
use crate::kubeconfig::{self, ClusterAccess, UnusableKubeconfig};
use crate::resource::names::SubscriptionId;
use crate::resource::tags;
use crate::resource::{ClusterRef, GroupRef};
use crate::server::AppState;
use crate::server::request::{RequestContext, encode, json, json_body};
use crate::store::{ClusterRecord, ClusterWrite, StoreError};

/// The write-only property that carries a cluster's kubeconfig (base64), never returned by GET.
pub(crate) const KUBECONFIG_PROPERTY: &str = "kubeconfig";

/// Fields of the resource that the server owns and ignores in a PUT body.
const SERVER_OWNED: [&str; 3] = ["id", "name", "type"];

/// Finds a cluster, telling a missing group apart from a missing cluster as ARM does.
pub(crate) async fn load(app: &AppState, cluster: &ClusterRef) -> Result<ClusterRecord, ApiError> {
    if let Some(found) = app.store.clusters().get_cluster(cluster).await? {
        return Ok(found);
    }
    ensure_group(app, &cluster.group_ref()).await?;
    Err(ApiError::ClusterNotFound { group: cluster.group.as_str().into(), name: cluster.name.as_str().into() })
}

pub(super) async fn ensure_group(app: &AppState, group: &GroupRef) -> Result<(), ApiError> {
    match app.store.clusters().get_group(&group.subscription, &group.group).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::ResourceGroupNotFound(group.group.as_str().to_string())),
    }
}

pub(crate) fn render(cluster: &ClusterRecord) -> Value {
    let fqdn = cluster.kubeconfig.as_deref().and_then(|k| kubeconfig::fqdn(k).ok());
    managed_cluster(
        cluster_id(&cluster.subscription, &cluster.group, &cluster.name),
        &cluster.name,
        &cluster.document,
        fqdn,
    )
}

pub(crate) async fn put(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    cluster: &ClusterRef,
    body: Body,
) -> Result<Response, ApiError> {
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let Value::Object(mut document) = body else {
        return Err(ApiError::InvalidRequestContent("the body must be a JSON object".into()));
    };
    for field in SERVER_OWNED {
        document.remove(field);
    }
    if let Some(tags) = document.get("tags") {
        tags::check(tags).map_err(ApiError::invalid_tags)?;
    }
    if document.get("tags").is_some_and(Value::is_null) {
        document.remove("tags");
    }
    let group = app
        .store
        .clusters()
        .get_group(&cluster.subscription, &cluster.group)
        .await?
        .ok_or_else(|| ApiError::ResourceGroupNotFound(cluster.group.as_str().to_string()))?;
    let location = match document.get("location").and_then(Value::as_str).filter(|l| !l.trim().is_empty()) {
        Some(given) => crate::resource::location::normalize(given),
        None => group.location,
    };
    document.insert("location".into(), Value::String(location));
    let properties = match document.entry("properties").or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(properties) => properties,
        _ => {
            return Err(ApiError::invalid("properties", "'properties' must be a JSON object"));
        }
    };
    let kubeconfig = take_kubeconfig(properties)?;
    let settings =
        ClusterSettings::from_properties(properties).map_err(|e| ApiError::invalid(e.property, e.message))?;
    let executor = settings.executor.unwrap_or(app.config.executor);
    let stored = app.store.clusters().get_cluster(cluster).await?;
    if let Some(stored) = &stored {
        guard_approval_policy(caller, stored, settings.approval)?;
    }
    match &kubeconfig {
        Some(new) => check_kubeconfig_for(new, executor)?,
        // A PUT that keeps the stored kubeconfig may still move the cluster to the Pod executor.
        None if executor == ExecutorKind::Kubernetes => {
            if let Some(stored) = stored.as_ref().and_then(|c| c.kubeconfig.as_ref()) {
                check_kubeconfig_for(stored, executor)?;
            }
        }
        None => {}
    }
    properties.insert("provisioningState".into(), Value::String("Succeeded".into()));
    properties.entry("powerState").or_insert_with(|| json_value!({ "code": "Running" }));

    let write = ClusterWrite { cluster: cluster.clone(), document, kubeconfig };
    let put = match app.store.clusters().put_cluster(write).await {
        Ok(put) => put,
        Err(StoreError::GroupNotFound) => {
            return Err(ApiError::ResourceGroupNotFound(cluster.group.as_str().into()));
        }
        Err(e) => return Err(e.into()),
    };
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &render(&put.value)))
}

/// `PATCH` (`az aks update --tags`, ARM's `updateTags`): the tags sent replace the cluster's;
/// nothing else of a managed cluster is patched (ARM's `TagsObject`), so a body with anything but
/// `tags` is refused rather than half applied. Settings change with PUT, where they are checked.
pub(crate) async fn patch(
    app: &AppState,
    ctx: &RequestContext,
    cluster: &ClusterRef,
    body: Body,
) -> Result<Response, ApiError> {
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let Value::Object(mut patch) = body else {
        return Err(ApiError::InvalidRequestContent("the body must be a JSON object".into()));
    };
    let tags = patch.remove("tags");
    if let Some(tags) = &tags {
        tags::check(tags).map_err(ApiError::invalid_tags)?;
    }
    if let Some(other) = patch.keys().next() {
        return Err(ApiError::invalid(
            other.clone(),
            format!("a managed cluster's PATCH changes its tags only; '{other}' changes with PUT"),
        ));
    }
    let stored = load(app, cluster).await?;
    let mut document = (*stored.document).clone();
    match tags {
        Some(Value::Null) => {
            document.remove("tags");
        }
        Some(tags) => {
            document.insert("tags".into(), tags);
        }
        None => {}
    }
    let put =
        app.store.clusters().put_cluster(ClusterWrite { cluster: cluster.clone(), document, kubeconfig: None }).await?;
    Ok(json(StatusCode::OK, &render(&put.value)))
}

/// Removes the write-only kubeconfig from the properties and checks it. `None`: keep the stored one.
fn take_kubeconfig(properties: &mut Map<String, Value>) -> Result<Option<Vec<u8>>, ApiError> {
    let target = "properties.kubeconfig";
    match properties.remove(KUBECONFIG_PROPERTY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(encoded)) => {
            let bytes = context::decode_base64(&encoded).map_err(|e| {
                ApiError::invalid(target, format!("'{target}' must be a base64-encoded kubeconfig: {e}"))
            })?;
            kubeconfig::fqdn(&bytes)
                .map_err(|e| ApiError::invalid(target, format!("'{target}' is not a usable kubeconfig: {e}")))?;
            Ok(Some(bytes))
        }
        Some(_) => Err(ApiError::invalid(target, format!("'{target}' must be a string (a base64-encoded kubeconfig)"))),
    }
}

/// What the server itself will do with a kubeconfig decides what it may hold. The Pod executor
/// reaches the cluster from the server's own process, so only the allow-list of
/// [`ClusterAccess`] may be in it; on the local executor kubectl reads it inside the command's
/// sandbox, where exec plugins are the command's own business, but a value that is simply broken
/// (a token that cannot be a header value) is refused all the same.
fn check_kubeconfig_for(kubeconfig: &[u8], executor: ExecutorKind) -> Result<(), ApiError> {
    let target = "properties.kubeconfig";
    match (ClusterAccess::from_kubeconfig(kubeconfig), executor) {
        (Ok(_), _) => Ok(()),
        (
            Err(
                UnusableKubeconfig::NotAllowed { .. }
                | UnusableKubeconfig::Structure(_)
                | UnusableKubeconfig::Syntax(_),
            ),
            ExecutorKind::Local,
        ) => Ok(()),
        (Err(e @ UnusableKubeconfig::NotAllowed { .. }), ExecutorKind::Kubernetes) => Err(ApiError::invalid(
            target,
            format!(
                "'{target}' cannot be used by the Pod executor (properties.commandExecutor or the server's --executor): {e}"
            ),
        )),
        (Err(e), _) => Err(ApiError::invalid(target, format!("'{target}' is not a usable kubeconfig: {e}"))),
    }
}

pub(crate) async fn get(app: &AppState, cluster: &ClusterRef) -> Result<Response, ApiError> {
    let found = load(app, cluster).await?;
    Ok(json(StatusCode::OK, &render(&found)))
}

/// 200 when deleted, 204 when there was nothing to delete (ARM's DELETE is idempotent).
pub(crate) async fn delete(app: &AppState, caller: &Caller, cluster: &ClusterRef) -> Result<Response, ApiError> {
    let stored = app.store.clusters().get_cluster(cluster).await?;
    if let Some(stored) = &stored {
        guard_approval_policy(caller, stored, None)?;
    }
    if app.store.clusters().delete_cluster(cluster).await? {
        if let Some(stored) = &stored {
            forget_run_commands(app, stored).await?;
        }
        return Ok(StatusCode::OK.into_response());
    }
    ensure_group(app, &cluster.group_ref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Forgets the run command resources (`handlers/run_commands.rs`) of a cluster that is gone:
/// they are documents under its id, which a cluster created again under the name must not inherit.
pub(super) async fn forget_run_commands(app: &AppState, cluster: &ClusterRecord) -> Result<(), ApiError> {
    let scope = cluster_id(&cluster.subscription, &cluster.group, &cluster.name);
    let documents = app.store.documents();
    for record in documents.list_documents(crate::store::DocumentKind::RunCommand, Some(&scope)).await? {
        documents.delete_document(crate::store::DocumentKind::RunCommand, &scope, &record.name).await?;
    }
    Ok(())
}

/// Changing or removing a cluster's approval policy (by PUT, or by deleting the cluster to create
/// it again) is an approver's business: without the approve action on the cluster, a principal
/// who may write clusters could otherwise turn four eyes off before running a command. Adding a
/// policy where there was none only tightens and needs nothing more.
pub(super) fn guard_approval_policy(
    caller: &Caller,
    stored: &ClusterRecord,
    next: Option<crate::approval::ApprovalPolicy>,
) -> Result<(), ApiError> {
    let current = ClusterSettings::from_document(&stored.document).ok().and_then(|s| s.approval);
    if current.is_some() && current != next {
        caller.require(
            crate::server::permissions::APPROVE,
            &cluster_id(&stored.subscription, &stored.group, &stored.name),
        )?;
    }
    Ok(())
}

/// Every cluster of a subscription (or of one group of it), in listing order, read a page at a time.
pub(super) async fn all_in(
    app: &AppState,
    subscription: &SubscriptionId,
    group: Option<&crate::resource::names::GroupName>,
) -> Result<Vec<ClusterRecord>, ApiError> {
    all_tagged_in(app, subscription, group, &[]).await
}

/// Every cluster of a subscription (or one group) carrying every pair of `tags` (all of them
/// for none), read page by page.
pub(super) async fn all_tagged_in(
    app: &AppState,
    subscription: &SubscriptionId,
    group: Option<&crate::resource::names::GroupName>,
    tags: &[(String, String)],
) -> Result<Vec<ClusterRecord>, ApiError> {
    const PAGE: usize = 1000;
    let clusters = app.store.clusters();
    let mut all: Vec<ClusterRecord> = Vec::new();
    loop {
        let after = all.last().map(|c| (c.group.to_lowercase(), c.name.to_ascii_lowercase()));
        let page = match tags {
            [] => clusters.list_clusters(subscription, group, after, PAGE).await?,
            tags => clusters.list_tagged_clusters(subscription, group, tags, after, PAGE).await?,
        };
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// One page of clusters, showing only those the caller may read.
pub(crate) async fn list(
    app: &AppState,
    caller: &Caller,
    ctx: &RequestContext,
    subscription: &SubscriptionId,
    group: Option<&GroupRef>,
) -> Result<Response, ApiError> {
    if let Some(group) = group {
        ensure_group(app, group).await?;
    }
    let after = ctx.query("$skipToken").map(parse_skip_token).transpose()?;
    let page = app.config.page_size;
    let mut found = app.store.clusters().list_clusters(subscription, group.map(|g| &g.group), after, page + 1).await?;
    let next_link = (found.len() > page).then(|| {
        found.truncate(page);
        let last = found.last().expect("a full page has a last element");
        let token = skip_token(&last.group.to_lowercase(), &last.name.to_ascii_lowercase());
        format!("{}&$skipToken={}", ctx.url(&ctx.path), encode(&token))
    });
    let readable = |c: &&ClusterRecord| {
        caller.may("Microsoft.ContainerService/managedClusters/read", &cluster_id(&c.subscription, &c.group, &c.name))
    };
    Ok(json(StatusCode::OK, &ListResult { value: found.iter().filter(readable).map(render).collect(), next_link }))
}

/// An opaque continuation token: the hex of the last (group key, cluster key) seen.
fn skip_token(group_key: &str, name_key: &str) -> String {
    format!("{group_key}/{name_key}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_skip_token(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::invalid("$skipToken", format!("The continuation token '{token}' is invalid."));
    if token.len() % 2 != 0 {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (group, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok((group.to_string(), name.to_string()))
}

/// listClusterAdminCredential / listClusterUserCredential: the registered kubeconfig, base64.
/// On an AAD cluster the user credential holds no secret, as on AKS: the same clusters and
/// contexts, and a user that logs in with kubelogin for the AKS AAD server application — the
/// stored static credential is the admin's alone.
pub(crate) async fn credentials(
    app: &AppState,
    cluster: &ClusterRef,
    name: &'static str,
) -> Result<Response, ApiError> {
    let found = load(app, cluster).await?;
    let stored = found.kubeconfig.ok_or_else(|| ApiError::NoCredentials(found.name.clone()))?;
    let aad = ClusterSettings::from_document(&found.document).map(|s| s.aad_managed).unwrap_or(true);
    let kubeconfig = if name == "clusterUser" && aad {
        let user = format!("clusterUser_{}_{}", found.group, found.name);
        kubeconfig::with_aad_login(&stored, &user, &app.instance.tenant_id)
            .map_err(|e| ApiError::NoCredentials(format!("{} (its kubeconfig cannot be read: {e})", found.name)))?
    } else {
        stored.to_vec()
    };
    let results =
        CredentialResults { kubeconfigs: vec![CredentialResult { name, value: context::encode(&kubeconfig) }] };
    Ok(json(StatusCode::OK, &results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_tokens_round_trip_and_reject_junk() {
        let token = skip_token("rg(1)", "c-1");
        assert_eq!(parse_skip_token(&token).unwrap(), ("rg(1)".into(), "c-1".into()));
        for junk in ["zz", "abc", "00ff", ""] {
            assert!(parse_skip_token(junk).is_err(), "{junk:?}");
        }
    }
}
