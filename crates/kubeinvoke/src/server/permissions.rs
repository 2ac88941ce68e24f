//! Which Azure action each ARM operation needs, and on which scope (docs/contract.md §7).
//! Lists are not here: they show only what the caller may read.

use axum::http::Method;

use crate::arm::path::{ClusterAction, ClusterRef, GroupRef, Route};
use crate::arm::wire::{cluster_id, group_id};

const MC: &str = "Microsoft.ContainerService/managedClusters";
/// Reading fan-out runs of a scope.
pub const RUNS_READ: &str = "Microsoft.ContainerService/commandRuns/read";
/// Canceling fan-out runs of a scope (their creator may always cancel).
pub const RUNS_CANCEL: &str = "Microsoft.ContainerService/commandRuns/cancel/action";
/// Saved commands (reading them, writing, deleting).
const SAVED: &str = "Microsoft.ContainerService/savedCommands";
/// Running a command on a cluster.
pub const RUN_COMMAND: &str = "Microsoft.ContainerService/managedClusters/runcommand/action";

pub struct Permission {
    pub action: String,
    pub scope: String,
}

fn on(scope: String, action: impl Into<String>) -> Option<Permission> {
    Some(Permission { action: action.into(), scope })
}

fn group_scope(g: &GroupRef) -> String {
    group_id(g.subscription.as_str(), g.group.as_str())
}

fn cluster_scope(c: &ClusterRef) -> String {
    cluster_id(c.subscription.as_str(), c.group.as_str(), c.name.as_str())
}

fn verb(method: &Method) -> &'static str {
    match *method {
        Method::PUT | Method::PATCH => "write",
        Method::DELETE => "delete",
        _ => "read",
    }
}

pub fn required(route: &Route, method: &Method) -> Option<Permission> {
    match route {
        Route::MetadataEndpoints
        | Route::Subscriptions
        | Route::ResourceGroups(_)
        | Route::ClustersInSubscription(_)
        | Route::ClustersInGroup(_) => None,
        Route::Subscription(s) => on(format!("/subscriptions/{s}"), "Microsoft.Resources/subscriptions/read"),
        Route::ResourceGroup(g) => {
            on(group_scope(g), format!("Microsoft.Resources/subscriptions/resourceGroups/{}", verb(method)))
        }
        Route::Cluster(c) => on(cluster_scope(c), format!("{MC}/{}", verb(method))),
        Route::ClusterAction(c, action) => {
            let name = match action {
                ClusterAction::RunCommand => "runcommand/action",
                ClusterAction::RunSavedCommand => "runSavedCommand/action",
                ClusterAction::ListAdminCredential => "listClusterAdminCredential/action",
                ClusterAction::ListUserCredential => "listClusterUserCredential/action",
            };
            on(cluster_scope(c), format!("{MC}/{name}"))
        }
        Route::CommandResult(c, _) | Route::CommandLogs(c, _) | Route::CommandHistory(c) => {
            on(cluster_scope(c), format!("{MC}/commandResults/read"))
        }
        Route::CancelCommand(c, _) => on(cluster_scope(c), format!("{MC}/runcommand/action")),
        Route::RoleAssignments(scope) => on(scope.clone(), "Microsoft.Authorization/roleAssignments/read"),
        Route::RoleAssignment(scope, _) => {
            on(scope.clone(), format!("Microsoft.Authorization/roleAssignments/{}", verb(method)))
        }
        Route::RoleDefinitions(scope) => on(scope.clone(), "Microsoft.Authorization/roleDefinitions/read"),
        Route::RoleDefinition(scope, _) => {
            on(scope.clone(), format!("Microsoft.Authorization/roleDefinitions/{}", verb(method)))
        }
        // A run needs `runcommand/action` on each target (checked per cluster; the others are
        // listed as skipped); its reader or canceler is the creator or one holding the action on
        // the run's scope (checked by the handler, which knows the creator).
        Route::FanOut(_) | Route::CommandRun(..) | Route::CancelCommandRun(..) => None,
        Route::CommandRuns(scope) => on(scope.id(), RUNS_READ),
        Route::SavedCommands(scope) => on(scope.id(), format!("{SAVED}/read")),
        Route::ActivityLog(s) => on(format!("/subscriptions/{s}"), "Microsoft.Insights/eventtypes/values/read"),
        Route::EventSubscriptions(scope) => on(scope.clone(), "Microsoft.EventGrid/eventSubscriptions/read"),
        Route::EventSubscription(scope, _) => {
            on(scope.clone(), format!("Microsoft.EventGrid/eventSubscriptions/{}", verb(method)))
        }
        Route::EventSubscriptionAttributes(scope, _) => {
            on(scope.clone(), "Microsoft.EventGrid/eventSubscriptions/getDeliveryAttributes/action")
        }
        Route::SavedCommand(scope, _) => on(scope.id(), format!("{SAVED}/{}", verb(method))),
    }
}
