//! The one entry point for ARM requests: parse the path, authenticate, check the api-version,
//! then hand the typed route to its handler. Order matters and is ARM's: an unauthenticated
//! caller learns nothing about names, and a bad api-version is reported before a bad name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth;
use super::handlers::{clusters, commands, groups, meta};
use super::request::RequestContext;
use crate::arm::ApiError;
use crate::arm::path::{self, ClusterAction, Namespace, Route};

pub async fn handle(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = RequestContext::new(&app, &parts);
    match dispatch(&app, &ctx, &parts.method, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    app: &AppState,
    ctx: &RequestContext,
    method: &Method,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let parsed = path::parse(&ctx.path);
    if parsed.as_ref().map(|p| p.namespace) != Some(Namespace::Metadata) {
        auth::authenticate(&ctx.headers, &format!("{}/{}", ctx.base_url, app.instance.tenant_id))?;
    }
    let parsed = parsed.ok_or_else(|| ApiError::NoRoute(ctx.path.clone()))?;
    app.config.api_versions.check(parsed.namespace, ctx.api_version())?;
    let route = parsed.route?;

    use Method as M;
    let not_allowed = |allowed: &'static str| Err(ApiError::MethodNotAllowed { method: method.to_string(), allowed });
    match route {
        Route::MetadataEndpoints => match *method {
            M::GET => Ok(meta::endpoints(ctx)),
            _ => not_allowed("GET"),
        },
        Route::Subscriptions => match *method {
            M::GET => meta::list_subscriptions(app).await,
            _ => not_allowed("GET"),
        },
        Route::Subscription(sub) => match *method {
            M::GET => Ok(meta::get_subscription(app, &sub)),
            _ => not_allowed("GET"),
        },
        Route::ResourceGroups(sub) => match *method {
            M::GET => groups::list(app, &sub).await,
            _ => not_allowed("GET"),
        },
        Route::ResourceGroup(group) => match *method {
            M::PUT => groups::put(app, ctx, &group, body).await,
            M::GET => groups::get(app, &group).await,
            M::HEAD => groups::exists(app, &group).await,
            M::DELETE => groups::delete(app, &group).await,
            _ => not_allowed("GET, HEAD, PUT, DELETE"),
        },
        Route::ClustersInSubscription(sub) => match *method {
            M::GET => clusters::list(app, ctx, &sub, None).await,
            _ => not_allowed("GET"),
        },
        Route::ClustersInGroup(group) => match *method {
            M::GET => clusters::list(app, ctx, &group.subscription, Some(&group)).await,
            _ => not_allowed("GET"),
        },
        Route::Cluster(cluster) => match *method {
            M::PUT => clusters::put(app, ctx, &cluster, body).await,
            M::GET => clusters::get(app, &cluster).await,
            M::DELETE => clusters::delete(app, &cluster).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::ClusterAction(cluster, action) => match (*method == M::POST, action) {
            (false, _) => not_allowed("POST"),
            (true, ClusterAction::RunCommand) => commands::run(app, ctx, &cluster, body).await,
            (true, ClusterAction::ListAdminCredential) => clusters::credentials(app, &cluster, "clusterAdmin").await,
            (true, ClusterAction::ListUserCredential) => clusters::credentials(app, &cluster, "clusterUser").await,
        },
        Route::CommandResult(cluster, id) => match *method {
            M::GET => commands::result(app, ctx, &cluster, &id).await,
            _ => not_allowed("GET"),
        },
    }
}
