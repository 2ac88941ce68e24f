//! Resource groups, as Microsoft.Resources serves them to `az group`.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::arm::ApiError;
use crate::arm::wire::{ListResult, ResourceGroup, ResourceGroupRequest};
use crate::identity::Caller;
use crate::resource::names::SubscriptionId;
use crate::resource::{GroupRef, location, tags};
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::GroupRecord;

fn render(group: &GroupRecord) -> ResourceGroup {
    ResourceGroup::new(&group.subscription, &group.name, &group.location, group.tags.clone())
}

pub(crate) async fn put(
    app: &AppState,
    ctx: &RequestContext,
    group: &GroupRef,
    body: Body,
) -> Result<Response, ApiError> {
    let request: ResourceGroupRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let location = request.location.filter(|l| !l.trim().is_empty()).ok_or(ApiError::LocationRequired)?;
    let tags = tags::checked(request.tags).map_err(ApiError::invalid_tags)?;
    let location = location::normalize(&location);
    if let Some(existing) = app.store.clusters().get_group(&group.subscription, &group.group).await? {
        same_location(&existing, &location)?;
    }
    let put = app
        .store
        .clusters()
        .put_group(GroupRecord {
            subscription: group.subscription.to_string(),
            name: group.group.as_str().to_string(),
            location,
            tags,
        })
        .await?;
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &render(&put.value)))
}

/// `PATCH` (`az group update --tags`): the tags sent replace the group's, as ARM does; its
/// location cannot change, and is left as it is when not sent.
pub(crate) async fn patch(
    app: &AppState,
    ctx: &RequestContext,
    group: &GroupRef,
    body: Body,
) -> Result<Response, ApiError> {
    let request: ResourceGroupRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let tags = tags::checked(request.tags).map_err(ApiError::invalid_tags)?;
    let mut existing = app
        .store
        .clusters()
        .get_group(&group.subscription, &group.group)
        .await?
        .ok_or_else(|| ApiError::ResourceGroupNotFound(group.group.as_str().to_string()))?;
    if let Some(location) = request.location.filter(|l| !l.trim().is_empty()) {
        same_location(&existing, &location::normalize(&location))?;
    }
    if let Some(tags) = tags {
        existing.tags = Some(tags);
    }
    let put = app.store.clusters().put_group(existing).await?;
    Ok(json(StatusCode::OK, &render(&put.value)))
}

/// A group stays where it was created (ARM: 409 `InvalidResourceGroupLocation`).
fn same_location(existing: &GroupRecord, requested: &str) -> Result<(), ApiError> {
    if location::normalize(&existing.location) == requested {
        return Ok(());
    }
    Err(ApiError::InvalidResourceGroupLocation {
        requested: requested.to_string(),
        existing: existing.location.clone(),
    })
}

pub(crate) async fn get(app: &AppState, group: &GroupRef) -> Result<Response, ApiError> {
    let found = app.store.clusters().get_group(&group.subscription, &group.group).await?;
    let found = found.ok_or_else(|| ApiError::ResourceGroupNotFound(group.group.as_str().to_string()))?;
    Ok(json(StatusCode::OK, &render(&found)))
}

/// `HEAD` (`az group exists`): 204 or 404, no body.
pub(crate) async fn exists(app: &AppState, group: &GroupRef) -> Result<Response, ApiError> {
    let found = app.store.clusters().get_group(&group.subscription, &group.group).await?;
    let status = if found.is_some() { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND };
    Ok(status.into_response())
}

/// Deletes the group with everything in it, synchronously. A cluster in it with an approval
/// policy goes only with the approve action on it (see `clusters::guard_approval_policy`).
pub(crate) async fn delete(app: &AppState, caller: &Caller, group: &GroupRef) -> Result<Response, ApiError> {
    let clusters = super::clusters::all_in(app, &group.subscription, Some(&group.group)).await?;
    for cluster in &clusters {
        super::clusters::guard_approval_policy(caller, cluster, None)?;
    }
    if app.store.clusters().delete_group(&group.subscription, &group.group).await? {
        for cluster in &clusters {
            super::clusters::forget_run_commands(app, cluster).await?;
        }
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::ResourceGroupNotFound(group.group.as_str().to_string()))
    }
}

/// The groups of a subscription that the caller may read.
pub(crate) async fn list(app: &AppState, caller: &Caller, subscription: &SubscriptionId) -> Result<Response, ApiError> {
    let groups = app.store.clusters().list_groups(subscription).await?;
    let value = groups
        .iter()
        .map(render)
        .filter(|g| caller.may("Microsoft.Resources/subscriptions/resourceGroups/read", &g.id))
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}
