//! Which Azure action each ARM operation needs, and on which scope (docs/contract.md §7).
//! Lists are not here: they show only what the caller may read.

use axum::http::Method;

use crate::arm::path::{ClusterAction, Route};
use crate::arm::wire::{cluster_id, group_id};
use crate::resource::{ClusterRef, GroupRef};

/// Reading fan-out runs of a scope.
pub(super) const RUNS_READ: &str = "Microsoft.ContainerService/commandRuns/read";
/// Canceling fan-out runs of a scope (their creator may always cancel).
pub(super) const RUNS_CANCEL: &str = "Microsoft.ContainerService/commandRuns/cancel/action";
/// Approving or rejecting a held command, and seeing what it would run (no built-in role but
/// Owner has it: Contributor's `*` leaves it out).
pub(crate) const APPROVE: &str = "Microsoft.ContainerService/managedClusters/commandResults/approve/action";
/// Running a command on a cluster.
pub(super) const RUN_COMMAND: &str = "Microsoft.ContainerService/managedClusters/runcommand/action";
/// Running a saved command on a cluster.
pub(super) const RUN_SAVED_COMMAND: &str = "Microsoft.ContainerService/managedClusters/runSavedCommand/action";

pub(super) struct Permission {
    /// Static for every route: checked on every request, so never built per request.
    pub action: &'static str,
    pub scope: String,
}

fn on(scope: String, action: &'static str) -> Option<Permission> {
    Some(Permission { action, scope })
}

fn group_scope(g: &GroupRef) -> String {
    group_id(g.subscription.as_str(), g.group.as_str())
}

fn cluster_scope(c: &ClusterRef) -> String {
    cluster_id(c.subscription.as_str(), c.group.as_str(), c.name.as_str())
}

/// The action of a resource type for the request's verb: `…/read`, `…/write` or `…/delete`.
macro_rules! by_verb {
    ($method:expr, $prefix:literal) => {
        match *$method {
            Method::PUT | Method::PATCH => concat!($prefix, "/write"),
            Method::DELETE => concat!($prefix, "/delete"),
            _ => concat!($prefix, "/read"),
        }
    };
}

pub(super) fn required(route: &Route, method: &Method) -> Option<Permission> {
    match route {
        Route::MetadataEndpoints
        | Route::Subscriptions
        | Route::ResourceGroups(_)
        | Route::ClustersInSubscription(_)
        | Route::ClustersInGroup(_) => None,
        Route::Subscription(s) | Route::Locations(s) => {
            on(format!("/subscriptions/{s}"), "Microsoft.Resources/subscriptions/read")
        }
        Route::Providers(s) | Route::Provider(s, _) => {
            on(format!("/subscriptions/{s}"), "Microsoft.Resources/subscriptions/providers/read")
        }
        // A no-op here, but a write in ARM: Reader may not.
        Route::RegisterProvider(s, _) => {
            on(format!("/subscriptions/{s}"), "Microsoft.Resources/subscriptions/providers/register/action")
        }
        Route::ResourceGroup(g) => {
            on(group_scope(g), by_verb!(method, "Microsoft.Resources/subscriptions/resourceGroups"))
        }
        Route::Cluster(c) => on(cluster_scope(c), by_verb!(method, "Microsoft.ContainerService/managedClusters")),
        Route::ClusterAction(c, action) => {
            let action = match action {
                ClusterAction::RunCommand => RUN_COMMAND,
                ClusterAction::RunSavedCommand => RUN_SAVED_COMMAND,
                ClusterAction::ListAdminCredential => {
                    "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action"
                }
                ClusterAction::ListUserCredential => {
                    "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
                }
            };
            on(cluster_scope(c), action)
        }
        Route::CommandResult(c, _) | Route::CommandLogs(c, _) | Route::CommandHistory(c) => {
            on(cluster_scope(c), "Microsoft.ContainerService/managedClusters/commandResults/read")
        }
        Route::CancelCommand(c, _) => on(cluster_scope(c), RUN_COMMAND),
        // A write needs the run action of its source too (checked by the handler, which reads it).
        Route::RunCommands(c) => on(cluster_scope(c), "Microsoft.ContainerService/managedClusters/runCommands/read"),
        Route::RunCommandResource(c, _) => {
            on(cluster_scope(c), by_verb!(method, "Microsoft.ContainerService/managedClusters/runCommands"))
        }
        Route::DecideCommand(c, ..) | Route::CommandApproval(c, _) | Route::CommandContext(c, _) => {
            on(cluster_scope(c), APPROVE)
        }
        // Lists only what the caller may approve (checked per cluster by the handler).
        Route::PendingApprovals(_) => None,
        Route::RoleAssignments(scope) => on(scope.clone(), "Microsoft.Authorization/roleAssignments/read"),
        Route::RoleAssignment(scope, _) => {
            on(scope.clone(), by_verb!(method, "Microsoft.Authorization/roleAssignments"))
        }
        Route::RoleDefinitions(scope) => on(scope.clone(), "Microsoft.Authorization/roleDefinitions/read"),
        Route::RoleDefinition(scope, _) => {
            on(scope.clone(), by_verb!(method, "Microsoft.Authorization/roleDefinitions"))
        }
        // A run needs `runcommand/action` on each target (checked per cluster; the others are
        // listed as skipped); its reader or canceler is the creator or one holding the action on
        // the run's scope (checked by the handler, which knows the creator).
        // A run's approver needs the approve action on every cluster the run would reach
        // (checked by the handler, which knows the targets).
        Route::FanOut(_)
        | Route::CommandRun(..)
        | Route::CommandRunTargets(..)
        | Route::CancelCommandRun(..)
        | Route::DecideCommandRun(..) => None,
        Route::CommandRuns(scope) => on(scope.id(), RUNS_READ),
        Route::SavedCommands(scope) => on(scope.id(), "Microsoft.ContainerService/savedCommands/read"),
        Route::ActivityLog(s) => on(format!("/subscriptions/{s}"), "Microsoft.Insights/eventtypes/values/read"),
        Route::EventSubscriptions(scope) => on(scope.clone(), "Microsoft.EventGrid/eventSubscriptions/read"),
        Route::EventSubscription(scope, _) => {
            on(scope.clone(), by_verb!(method, "Microsoft.EventGrid/eventSubscriptions"))
        }
        Route::EventSubscriptionAttributes(scope, _) => {
            on(scope.clone(), "Microsoft.EventGrid/eventSubscriptions/getDeliveryAttributes/action")
        }
        Route::SavedCommand(scope, _) => on(scope.id(), by_verb!(method, "Microsoft.ContainerService/savedCommands")),
    }
}
