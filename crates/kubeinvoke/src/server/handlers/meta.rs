//! Subscriptions and cloud metadata: what `az login` and `az cloud register` read.

use axum::http::StatusCode;
use axum::response::Response;

use crate::arm::ApiError;
use crate::arm::wire::{CloudMetadata, ListResult, Subscription};
use crate::identity::{Caller, rbac};
use crate::resource::names::SubscriptionId;
use crate::server::AppState;
use crate::server::request::{RequestContext, json};

pub(crate) fn endpoints(ctx: &RequestContext) -> Response {
    let audiences = crate::identity::tokens::ARM_AUDIENCES.into_iter().filter(|a| a.ends_with('/')).collect();
    json(StatusCode::OK, &CloudMetadata::new(&ctx.base_url, super::graph::graph_resource(&ctx.base_url), audiences))
}

/// The default subscription and every subscription that holds resource groups, as far as the
/// caller has any role assignment in it.
pub(crate) async fn list_subscriptions(app: &AppState, caller: &Caller) -> Result<Response, ApiError> {
    let mut ids = app.store.clusters().list_subscriptions().await?;
    ids.retain(|id| *id != app.instance.subscription_id);
    ids.insert(0, app.instance.subscription_id.clone());
    ids.retain(|id| rbac::touches(&caller.assignments, &format!("/subscriptions/{id}")));
    let value = ids.iter().map(|id| Subscription::new(id, &app.instance.tenant_id)).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

/// Every well-formed subscription exists here: resources can be created in any of them.
pub(crate) fn get_subscription(app: &AppState, subscription: &SubscriptionId) -> Response {
    json(StatusCode::OK, &Subscription::new(subscription.as_str(), &app.instance.tenant_id))
}
