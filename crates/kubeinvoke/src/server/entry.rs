//! The one entry point for ARM requests: parse the path, authenticate, check the api-version,
//! validate names, authorize, then hand the typed route to its handler. The order is ARM's: an
//! unauthenticated caller learns nothing about names, and an unauthorized one nothing about
//! whether a resource exists.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::handlers::{
    activity, approvals, authorization, clusters, commands, eventgrid, groups, history, meta, providers, run_commands,
    runs, saved,
};
use super::request::RequestContext;
use super::{permissions, request_events};
use crate::arm::ApiError;
use crate::arm::path::{self, ClusterAction, Namespace, Route};
use crate::identity::Caller;

/// The route template of an ARM request (never its names, to keep metric labels bounded), put on
/// the response here, where the path was parsed, for the headers middleware's log line and
/// metrics, so the path is not parsed twice.
#[derive(Clone, Copy)]
pub(super) struct RouteTemplate(pub &'static str);

pub(super) async fn handle(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let ctx = RequestContext::new(&app, &mut parts);
    let mut caller = None;
    let parsed = path::parse(&ctx.path);
    let template = parsed.as_ref().map(|p| p.route.as_ref().map_or("invalid", Route::template));
    let mut response = match route(&app, &ctx, parsed, &parts.method, body, &mut caller).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    if let Some(event) = request_events::event_for(&ctx, &parts.method, caller.as_deref(), response.status()) {
        app.activity.append(vec![event]).await;
    }
    response
}

async fn authenticate(app: &AppState, ctx: &RequestContext) -> Result<Caller, ApiError> {
    let authorization = ctx.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let authority = || format!("{}/{}", ctx.base_url, app.instance.tenant_id);
    app.identity.authenticate(authorization, authority).await
}

async fn route(
    app: &AppState,
    ctx: &RequestContext,
    parsed: Option<path::Parsed>,
    method: &Method,
    body: axum::body::Body,
    caller_id: &mut Option<String>,
) -> Result<Response, ApiError> {
    let caller = match parsed.as_ref().map(|p| p.namespace) {
        Some(Namespace::Metadata) => None,
        _ => Some(authenticate(app, ctx).await?),
    };
    *caller_id = caller.as_ref().map(|c| c.claims.app_id().to_string());
    let parsed = parsed.ok_or_else(|| ApiError::NoRoute(ctx.path.clone()))?;
    app.config.api_versions.check(parsed.namespace, ctx.api_version())?;
    let route = parsed.route?;
    if let (Some(caller), Some(needed)) = (&caller, permissions::required(&route, method)) {
        caller.require(needed.action, &needed.scope)?;
    }
    let caller = caller.as_ref();

    use Method as M;
    let not_allowed = |allowed: &'static str| Err(ApiError::MethodNotAllowed { method: method.to_string(), allowed });
    let who = || caller.expect("every route but metadata is authenticated");
    match route {
        Route::MetadataEndpoints => match *method {
            M::GET => Ok(meta::endpoints(ctx)),
            _ => not_allowed("GET"),
        },
        Route::Subscriptions => match *method {
            M::GET => meta::list_subscriptions(app, who()).await,
            _ => not_allowed("GET"),
        },
        Route::Subscription(sub) => match *method {
            M::GET => Ok(meta::get_subscription(app, &sub)),
            _ => not_allowed("GET"),
        },
        Route::Providers(sub) => match *method {
            M::GET => Ok(providers::list(&sub)),
            _ => not_allowed("GET"),
        },
        Route::Provider(sub, namespace) => match *method {
            M::GET => providers::get(&sub, &namespace),
            _ => not_allowed("GET"),
        },
        Route::RegisterProvider(sub, namespace) => match *method {
            M::POST => providers::get(&sub, &namespace),
            _ => not_allowed("POST"),
        },
        Route::Locations(sub) => match *method {
            M::GET => Ok(providers::locations(&sub)),
            _ => not_allowed("GET"),
        },
        Route::ResourceGroups(sub) => match *method {
            M::GET => groups::list(app, who(), &sub).await,
            _ => not_allowed("GET"),
        },
        Route::ResourceGroup(group) => match *method {
            M::PUT => groups::put(app, ctx, &group, body).await,
            M::PATCH => groups::patch(app, ctx, &group, body).await,
            M::GET => groups::get(app, &group).await,
            M::HEAD => groups::exists(app, &group).await,
            M::DELETE => groups::delete(app, who(), &group).await,
            _ => not_allowed("GET, HEAD, PUT, PATCH, DELETE"),
        },
        Route::ClustersInSubscription(sub) => match *method {
            M::GET => clusters::list(app, who(), ctx, &sub, None).await,
            _ => not_allowed("GET"),
        },
        Route::ClustersInGroup(group) => match *method {
            M::GET => clusters::list(app, who(), ctx, &group.subscription, Some(&group)).await,
            _ => not_allowed("GET"),
        },
        Route::Cluster(cluster) => match *method {
            M::PUT => clusters::put(app, ctx, who(), &cluster, body).await,
            M::PATCH => clusters::patch(app, ctx, &cluster, body).await,
            M::GET => clusters::get(app, &cluster).await,
            M::DELETE => clusters::delete(app, who(), &cluster).await,
            _ => not_allowed("GET, PUT, PATCH, DELETE"),
        },
        Route::ClusterAction(cluster, action) => match (*method == M::POST, action) {
            (false, _) => not_allowed("POST"),
            (true, ClusterAction::RunCommand) => commands::run(app, ctx, who(), &cluster, body).await,
            (true, ClusterAction::RunSavedCommand) => saved::run(app, ctx, who(), &cluster, body).await,
            (true, ClusterAction::ListAdminCredential) => clusters::credentials(app, &cluster, "clusterAdmin").await,
            (true, ClusterAction::ListUserCredential) => clusters::credentials(app, &cluster, "clusterUser").await,
        },
        Route::RunCommands(cluster) => match *method {
            M::GET => run_commands::list(app, &cluster).await,
            _ => not_allowed("GET"),
        },
        Route::RunCommandResource(cluster, name) => match *method {
            M::PUT => run_commands::put(app, ctx, who(), &cluster, &name, body).await,
            M::GET => run_commands::get(app, &cluster, &name).await,
            M::DELETE => run_commands::delete(app, who(), &cluster, &name).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::CommandResult(cluster, id) => match *method {
            M::GET => commands::result(app, ctx, &cluster, &id).await,
            _ => not_allowed("GET"),
        },
        Route::CommandHistory(cluster) => match *method {
            M::GET => history::list(app, ctx, &cluster).await,
            _ => not_allowed("GET"),
        },
        Route::CommandLogs(cluster, id) => match *method {
            M::GET => history::logs(app, ctx, &cluster, &id).await,
            _ => not_allowed("GET"),
        },
        Route::CancelCommand(cluster, id) => match *method {
            M::POST => history::cancel(app, ctx, who(), &cluster, &id).await,
            _ => not_allowed("POST"),
        },
        Route::DecideCommand(cluster, id, verdict) => match *method {
            M::POST => approvals::decide(app, ctx, who(), &cluster, &id, verdict, body).await,
            _ => not_allowed("POST"),
        },
        Route::CommandApproval(cluster, id) => match *method {
            M::GET => approvals::view(app, &cluster, &id).await,
            _ => not_allowed("GET"),
        },
        Route::CommandContext(cluster, id) => match *method {
            M::GET => approvals::context(app, &cluster, &id).await,
            _ => not_allowed("GET"),
        },
        Route::PendingApprovals(scope) => match *method {
            M::GET => approvals::pending(app, who(), &scope).await,
            _ => not_allowed("GET"),
        },
        Route::RoleAssignments(scope) => match *method {
            M::GET => authorization::list_assignments(app, ctx, &scope).await,
            _ => not_allowed("GET"),
        },
        Route::RoleAssignment(scope, name) => match *method {
            M::PUT => authorization::put_assignment(app, ctx, &scope, &name, body).await,
            M::GET => authorization::get_assignment(app, &scope, &name).await,
            M::DELETE => authorization::delete_assignment(app, &scope, &name).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::RoleDefinitions(scope) => match *method {
            M::GET => authorization::list_definitions(app, ctx, &scope).await,
            _ => not_allowed("GET"),
        },
        Route::RoleDefinition(scope, id) => match *method {
            M::GET => authorization::get_definition(app, who(), &scope, &id).await,
            M::PUT => authorization::put_definition(app, ctx, who(), &scope, &id, body).await,
            M::DELETE => authorization::delete_definition(app, who(), &scope, &id).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::FanOut(scope) => match *method {
            M::POST => runs::submit(app, ctx, who(), &scope, body).await,
            _ => not_allowed("POST"),
        },
        Route::CommandRuns(scope) => match *method {
            M::GET => runs::list(app, ctx, &scope).await,
            _ => not_allowed("GET"),
        },
        Route::CommandRun(scope, id) => match *method {
            M::GET => runs::get(app, ctx, who(), &scope, &id).await,
            _ => not_allowed("GET"),
        },
        Route::CommandRunTargets(scope, id) => match *method {
            M::GET => runs::targets(app, ctx, who(), &scope, &id).await,
            _ => not_allowed("GET"),
        },
        Route::ActivityLog(subscription) => match *method {
            M::GET => activity::list(app, ctx, &subscription).await,
            _ => not_allowed("GET"),
        },
        Route::EventSubscriptions(scope) => match *method {
            M::GET => eventgrid::list(app, &scope).await,
            _ => not_allowed("GET"),
        },
        Route::EventSubscription(scope, name) => match *method {
            M::PUT => eventgrid::put(app, ctx, &scope, &name, body).await,
            M::GET => eventgrid::get(app, &scope, &name).await,
            M::DELETE => eventgrid::delete(app, &scope, &name).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::EventSubscriptionAttributes(scope, name) => match *method {
            M::POST => eventgrid::attributes(app, &scope, &name).await,
            _ => not_allowed("POST"),
        },
        Route::SavedCommands(scope) => match *method {
            M::GET => saved::list(app, &scope).await,
            _ => not_allowed("GET"),
        },
        Route::SavedCommand(scope, name) => match *method {
            M::PUT => saved::put(app, ctx, who(), &scope, &name, body).await,
            M::GET => saved::get(app, &scope, &name).await,
            M::DELETE => saved::delete(app, &scope, &name).await,
            _ => not_allowed("GET, PUT, DELETE"),
        },
        Route::CancelCommandRun(scope, id) => match *method {
            M::POST => runs::cancel(app, ctx, who(), &scope, &id).await,
            _ => not_allowed("POST"),
        },
        Route::DecideCommandRun(scope, id, verdict) => match *method {
            M::POST => approvals::decide_run(app, ctx, who(), &scope, &id, verdict, body).await,
            _ => not_allowed("POST"),
        },
    }
}
