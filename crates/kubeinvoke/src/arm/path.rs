//! The ARM path grammar: a request path becomes a typed [`Route`] or nothing.
//!
//! Literal segments match case-insensitively, as ARM does. Parsing happens in two steps so the
//! server can authenticate and check the api-version before it reports a malformed name: the
//! structure decides the [`Namespace`], and name validation errors are carried in [`Parsed::route`].

use percent_encoding::percent_decode_str;
use smallvec::SmallVec;

use super::ApiError;
use crate::command::CommandId;
use crate::fanout::RunId;
use crate::resource::names::{ClusterName, GroupName, SubscriptionId};
use crate::resource::{ClusterRef, GroupRef, ScopeRef};

/// Which API family a path belongs to; api-version rules and authentication differ per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// `/metadata/endpoints`: public cloud metadata, no token, api-version optional.
    Metadata,
    /// Microsoft.Resources: subscriptions and resource groups.
    Resources,
    /// Microsoft.ContainerService: managed clusters and run command.
    ContainerService,
    /// Microsoft.Authorization: role assignments and definitions, at any scope.
    Authorization,
    /// Microsoft.Insights: the activity log.
    Monitor,
    /// Microsoft.EventGrid: event subscriptions, at any scope.
    EventGrid,
}

/// POST actions on a managed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterAction {
    RunCommand,
    /// Extension: run a saved command with parameters.
    RunSavedCommand,
    ListAdminCredential,
    ListUserCredential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    MetadataEndpoints,
    Subscriptions,
    Subscription(SubscriptionId),
    ResourceGroups(SubscriptionId),
    /// `/subscriptions/{s}/providers[/{namespace}[/register]]` and `/subscriptions/{s}/locations`.
    Providers(SubscriptionId),
    Provider(SubscriptionId, String),
    RegisterProvider(SubscriptionId, String),
    Locations(SubscriptionId),
    ResourceGroup(GroupRef),
    ClustersInSubscription(SubscriptionId),
    ClustersInGroup(GroupRef),
    Cluster(ClusterRef),
    ClusterAction(ClusterRef, ClusterAction),
    CommandResult(ClusterRef, CommandId),
    /// `…/managedClusters/{name}/runCommands[/{runCommandName}]` (an extension): run commands as
    /// resources.
    RunCommands(ClusterRef),
    RunCommandResource(ClusterRef, String),
    /// Extensions (not in Azure's API): the history, live output and cancel of commands.
    CommandHistory(ClusterRef),
    CommandLogs(ClusterRef, CommandId),
    CancelCommand(ClusterRef, CommandId),
    /// `…/commandResults/{id}/approve` and `/reject` (an extension: four eyes).
    DecideCommand(ClusterRef, CommandId, crate::approval::Verdict),
    /// `…/commandResults/{id}/approval`: what an approver decides on.
    CommandApproval(ClusterRef, CommandId),
    /// `…/commandResults/{id}/context`: the attached zip, for its approvers.
    CommandContext(ClusterRef, CommandId),
    /// `{scope}/providers/Microsoft.ContainerService/pendingApprovals`: what waits for approvers.
    PendingApprovals(ScopeRef),
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments`; scope `/` is the root.
    RoleAssignments(String),
    RoleAssignment(String, String),
    RoleDefinitions(String),
    RoleDefinition(String, String),
    /// Extensions (not in Azure's API): fan-out runs across the clusters of a scope.
    FanOut(ScopeRef),
    CommandRuns(ScopeRef),
    CommandRun(ScopeRef, RunId),
    /// `{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/targets`: a page of them.
    CommandRunTargets(ScopeRef, RunId),
    CancelCommandRun(ScopeRef, RunId),
    /// `{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/approve` and `/reject`.
    DecideCommandRun(ScopeRef, RunId, crate::approval::Verdict),
    /// Extensions: saved commands of a scope.
    SavedCommands(ScopeRef),
    SavedCommand(ScopeRef, String),
    /// `/subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values`.
    ActivityLog(SubscriptionId),
    /// `{scope}/providers/Microsoft.EventGrid/eventSubscriptions[/{name}[/getDeliveryAttributes]]`.
    EventSubscriptions(String),
    EventSubscription(String, String),
    EventSubscriptionAttributes(String, String),
}

impl Route {
    /// The route's template, for metrics and logs (names replaced by placeholders).
    pub(crate) fn template(&self) -> &'static str {
        match self {
            Route::MetadataEndpoints => "/metadata/endpoints",
            Route::Subscriptions => "/subscriptions",
            Route::Subscription(_) => "/subscriptions/{s}",
            Route::ResourceGroups(_) => "/subscriptions/{s}/resourceGroups",
            Route::Providers(_) => "/subscriptions/{s}/providers",
            Route::Provider(..) => "/subscriptions/{s}/providers/{namespace}",
            Route::RegisterProvider(..) => "/subscriptions/{s}/providers/{namespace}/register",
            Route::Locations(_) => "/subscriptions/{s}/locations",
            Route::ResourceGroup(_) => "/subscriptions/{s}/resourceGroups/{rg}",
            Route::ClustersInSubscription(_) => {
                "/subscriptions/{s}/providers/Microsoft.ContainerService/managedClusters"
            }
            Route::ClustersInGroup(_) => {
                "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters"
            }
            Route::Cluster(_) => "{cluster}",
            Route::ClusterAction(_, ClusterAction::RunCommand) => "{cluster}/runCommand",
            Route::ClusterAction(_, ClusterAction::ListAdminCredential) => "{cluster}/listClusterAdminCredential",
            Route::ClusterAction(_, ClusterAction::ListUserCredential) => "{cluster}/listClusterUserCredential",
            Route::CommandResult(..) => "{cluster}/commandResults/{id}",
            Route::RunCommands(_) => "{cluster}/runCommands",
            Route::RunCommandResource(..) => "{cluster}/runCommands/{name}",
            Route::CommandHistory(_) => "{cluster}/commandResults",
            Route::CommandLogs(..) => "{cluster}/commandResults/{id}/logs",
            Route::CancelCommand(..) => "{cluster}/commandResults/{id}/cancel",
            Route::DecideCommand(.., crate::approval::Verdict::Approve) => "{cluster}/commandResults/{id}/approve",
            Route::DecideCommand(.., crate::approval::Verdict::Reject) => "{cluster}/commandResults/{id}/reject",
            Route::CommandApproval(..) => "{cluster}/commandResults/{id}/approval",
            Route::CommandContext(..) => "{cluster}/commandResults/{id}/context",
            Route::PendingApprovals(_) => "{scope}/providers/Microsoft.ContainerService/pendingApprovals",
            Route::RoleAssignments(_) => "{scope}/providers/Microsoft.Authorization/roleAssignments",
            Route::RoleAssignment(..) => "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            Route::RoleDefinitions(_) => "{scope}/providers/Microsoft.Authorization/roleDefinitions",
            Route::RoleDefinition(..) => "{scope}/providers/Microsoft.Authorization/roleDefinitions/{id}",
            Route::FanOut(_) => "{scope}/providers/Microsoft.ContainerService/runCommand",
            Route::CommandRuns(_) => "{scope}/providers/Microsoft.ContainerService/commandRuns",
            Route::CommandRun(..) => "{scope}/providers/Microsoft.ContainerService/commandRuns/{id}",
            Route::CommandRunTargets(..) => "{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/targets",
            Route::CancelCommandRun(..) => "{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/cancel",
            Route::DecideCommandRun(.., crate::approval::Verdict::Approve) => {
                "{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/approve"
            }
            Route::DecideCommandRun(.., crate::approval::Verdict::Reject) => {
                "{scope}/providers/Microsoft.ContainerService/commandRuns/{id}/reject"
            }
            Route::SavedCommands(_) => "{scope}/providers/Microsoft.ContainerService/savedCommands",
            Route::ActivityLog(_) => "/subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values",
            Route::EventSubscriptions(_) => "{scope}/providers/Microsoft.EventGrid/eventSubscriptions",
            Route::EventSubscription(..) => "{scope}/providers/Microsoft.EventGrid/eventSubscriptions/{name}",
            Route::EventSubscriptionAttributes(..) => {
                "{scope}/providers/Microsoft.EventGrid/eventSubscriptions/{name}/getDeliveryAttributes"
            }
            Route::SavedCommand(..) => "{scope}/providers/Microsoft.ContainerService/savedCommands/{name}",
            Route::ClusterAction(_, ClusterAction::RunSavedCommand) => "{cluster}/runSavedCommand",
        }
    }
}

/// A path whose shape is known; `route` is `Err` when a name in it is malformed.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub namespace: Namespace,
    pub route: Result<Route, ApiError>,
}

const PROVIDER: &str = "Microsoft.ContainerService";
const CLUSTERS: &str = "managedClusters";

/// The non-empty `/`-separated segments of a path. The one-element array makes `split` scan
/// character by character: for segments this short that is cheaper than `split('/')`, which sets
/// up a `memchr` for every segment (measured: a fifth of a result read's path parsing).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split(['/']).filter(|s| !s.is_empty())
}

/// Parses a request path (without the query). `None` means no route has this shape.
pub(crate) fn parse(path: &str) -> Option<Parsed> {
    // Clients join a base URL ending in '/' with a path starting with one (az does, for
    // `//metadata/endpoints`): empty segments are ignored, as ARM ignores them.
    let trimmed = path.strip_prefix('/')?;
    // On the stack, and borrowed from the path unless it is percent-encoded somewhere: this runs
    // on every request.
    let encoded = trimmed.contains('%');
    let decoded: SmallVec<[std::borrow::Cow<str>; 16]> = if encoded {
        segments(trimmed).map(|s| percent_decode_str(s).decode_utf8_lossy()).collect()
    } else {
        SmallVec::new()
    };
    let seg: SmallVec<[&str; 16]> =
        if encoded { decoded.iter().map(|s| s.as_ref()).collect() } else { segments(trimmed).collect() };
    if seg.is_empty() || seg.iter().any(|s| s.is_empty()) {
        return None;
    }
    let lit = |i: usize, word: &str| seg.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));

    if seg.len() == 2 && lit(0, "metadata") && lit(1, "endpoints") {
        return Some(Parsed { namespace: Namespace::Metadata, route: Ok(Route::MetadataEndpoints) });
    }
    if let Some(at) = (0..seg.len().saturating_sub(1)).find(|&i| {
        seg[i].eq_ignore_ascii_case("providers") && seg[i + 1].eq_ignore_ascii_case("Microsoft.Authorization")
    }) {
        return parse_authorization(&seg[..at], &seg[at + 2..]);
    }
    if let Some(at) = (0..seg.len().saturating_sub(1))
        .find(|&i| seg[i].eq_ignore_ascii_case("providers") && seg[i + 1].eq_ignore_ascii_case("Microsoft.EventGrid"))
    {
        return parse_event_grid(&seg[..at], &seg[at + 2..]);
    }
    if seg.len() == 7
        && lit(0, "subscriptions")
        && lit(2, "providers")
        && lit(3, "Microsoft.Insights")
        && lit(4, "eventtypes")
        && lit(5, "management")
        && lit(6, "values")
    {
        return Some(Parsed {
            namespace: Namespace::Monitor,
            route: SubscriptionId::parse(seg[1]).map(Route::ActivityLog).map_err(ApiError::from),
        });
    }
    if !lit(0, "subscriptions") {
        return None;
    }
    let resources = |route| Some(Parsed { namespace: Namespace::Resources, route });
    let container = |route| Some(Parsed { namespace: Namespace::ContainerService, route });
    let sub = || SubscriptionId::parse(seg[1]).map_err(ApiError::from);
    let group =
        || -> Result<GroupRef, ApiError> { Ok(GroupRef { subscription: sub()?, group: GroupName::parse(seg[3])? }) };
    let cluster = || -> Result<ClusterRef, ApiError> {
        let g = group()?;
        Ok(ClusterRef { subscription: g.subscription, group: g.group, name: ClusterName::parse(seg[7])? })
    };
    let in_provider = |at: usize| lit(at, "providers") && lit(at + 1, PROVIDER) && lit(at + 2, CLUSTERS);

    if seg.len() == 5 && lit(2, "providers") && lit(4, "register") {
        return resources(sub().map(|s| Route::RegisterProvider(s, seg[3].to_string())));
    }
    // Fan-out extensions directly under the provider at subscription or group scope.
    let scope_end = if lit(2, "resourceGroups") { 4 } else { 2 };
    if seg.len() > scope_end + 2
        && lit(scope_end, "providers")
        && lit(scope_end + 1, PROVIDER)
        && !lit(scope_end + 2, CLUSTERS)
    {
        let scope = || -> Result<ScopeRef, ApiError> {
            Ok(if scope_end == 4 { ScopeRef::Group(group()?) } else { ScopeRef::Subscription(sub()?) })
        };
        let rest = &seg[scope_end + 2..];
        let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
        return match rest {
            [action] if is(action, "runCommand") => container(scope().map(Route::FanOut)),
            [kind] if is(kind, "commandRuns") => container(scope().map(Route::CommandRuns)),
            [kind] if is(kind, "pendingApprovals") => container(scope().map(Route::PendingApprovals)),
            [kind, id] if is(kind, "commandRuns") => {
                container(scope().map(|s| Route::CommandRun(s, RunId::from_text(id.to_lowercase()))))
            }
            [kind, id, list] if is(kind, "commandRuns") && is(list, "targets") => {
                container(scope().map(|s| Route::CommandRunTargets(s, RunId::from_text(id.to_lowercase()))))
            }
            [kind, id, action] if is(kind, "commandRuns") && is(action, "cancel") => {
                container(scope().map(|s| Route::CancelCommandRun(s, RunId::from_text(id.to_lowercase()))))
            }
            [kind, id, action] if is(kind, "commandRuns") && (is(action, "approve") || is(action, "reject")) => {
                use crate::approval::Verdict;
                let verdict = if is(action, "approve") { Verdict::Approve } else { Verdict::Reject };
                container(scope().map(|s| Route::DecideCommandRun(s, RunId::from_text(id.to_lowercase()), verdict)))
            }
            [kind] if is(kind, "savedCommands") => container(scope().map(Route::SavedCommands)),
            [kind, name] if is(kind, "savedCommands") => container(
                scope().and_then(|s| Ok(Route::SavedCommand(s, ClusterName::parse(name)?.as_str().to_string()))),
            ),
            _ => None,
        };
    }

    match seg.len() {
        1 => resources(Ok(Route::Subscriptions)),
        2 => resources(sub().map(Route::Subscription)),
        3 if lit(2, "resourceGroups") => resources(sub().map(Route::ResourceGroups)),
        3 if lit(2, "providers") => resources(sub().map(Route::Providers)),
        3 if lit(2, "locations") => resources(sub().map(Route::Locations)),
        4 if lit(2, "providers") => resources(sub().map(|s| Route::Provider(s, seg[3].to_string()))),
        4 if lit(2, "resourceGroups") => resources(group().map(Route::ResourceGroup)),
        5 if in_provider(2) => container(sub().map(Route::ClustersInSubscription)),
        7 if lit(2, "resourceGroups") && in_provider(4) => container(group().map(Route::ClustersInGroup)),
        8 if lit(2, "resourceGroups") && in_provider(4) => container(cluster().map(Route::Cluster)),
        9 if lit(2, "resourceGroups") && in_provider(4) => {
            let action = match seg[8] {
                s if s.eq_ignore_ascii_case("runCommand") => ClusterAction::RunCommand,
                s if s.eq_ignore_ascii_case("runSavedCommand") => ClusterAction::RunSavedCommand,
                s if s.eq_ignore_ascii_case("listClusterAdminCredential") => ClusterAction::ListAdminCredential,
                s if s.eq_ignore_ascii_case("listClusterUserCredential") => ClusterAction::ListUserCredential,
                s if s.eq_ignore_ascii_case("commandResults") => {
                    return container(cluster().map(Route::CommandHistory));
                }
                s if s.eq_ignore_ascii_case("runCommands") => {
                    return container(cluster().map(Route::RunCommands));
                }
                _ => return None,
            };
            container(cluster().map(|c| Route::ClusterAction(c, action)))
        }
        10 if lit(2, "resourceGroups") && in_provider(4) && lit(8, "runCommands") => container(
            cluster().and_then(|c| Ok(Route::RunCommandResource(c, ClusterName::parse(seg[9])?.as_str().to_string()))),
        ),
        10 if lit(2, "resourceGroups") && in_provider(4) && lit(8, "commandResults") => {
            let id = CommandId::from_text(seg[9]);
            container(cluster().map(|c| Route::CommandResult(c, id)))
        }
        11 if lit(2, "resourceGroups") && in_provider(4) && lit(8, "commandResults") => {
            let id = CommandId::from_text(seg[9]);
            match seg[10] {
                s if s.eq_ignore_ascii_case("logs") => container(cluster().map(|c| Route::CommandLogs(c, id))),
                s if s.eq_ignore_ascii_case("cancel") => container(cluster().map(|c| Route::CancelCommand(c, id))),
                s if s.eq_ignore_ascii_case("approve") => {
                    container(cluster().map(|c| Route::DecideCommand(c, id, crate::approval::Verdict::Approve)))
                }
                s if s.eq_ignore_ascii_case("reject") => {
                    container(cluster().map(|c| Route::DecideCommand(c, id, crate::approval::Verdict::Reject)))
                }
                s if s.eq_ignore_ascii_case("approval") => container(cluster().map(|c| Route::CommandApproval(c, id))),
                s if s.eq_ignore_ascii_case("context") => container(cluster().map(|c| Route::CommandContext(c, id))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `{scope}/providers/Microsoft.EventGrid/eventSubscriptions[/{name}[/getDeliveryAttributes]]`;
/// the scope is a subscription, a resource group or a managed cluster.
fn parse_event_grid(scope: &[&str], rest: &[&str]) -> Option<Parsed> {
    let scope_path = format!("/{}", scope.join("/"));
    let checked = match parse(&scope_path)?.route {
        Ok(Route::Subscription(_) | Route::ResourceGroup(_) | Route::Cluster(_)) => Ok(()),
        Ok(_) => return None,
        Err(e) => Err(e),
    };
    let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
    let route = match rest {
        [kind] if is(kind, "eventSubscriptions") => Route::EventSubscriptions(scope_path),
        [kind, name] if is(kind, "eventSubscriptions") => Route::EventSubscription(scope_path, name.to_string()),
        [kind, name, action] if is(kind, "eventSubscriptions") && is(action, "getDeliveryAttributes") => {
            Route::EventSubscriptionAttributes(scope_path, name.to_string())
        }
        _ => return None,
    };
    Some(Parsed { namespace: Namespace::EventGrid, route: checked.map(|()| route) })
}

/// `{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]`.
fn parse_authorization(scope: &[&str], rest: &[&str]) -> Option<Parsed> {
    let scope_path = format!("/{}", scope.join("/"));
    let scope_ok = match scope {
        [] => Ok(()),
        _ => match parse(&scope_path)?.route {
            Ok(Route::Subscription(_) | Route::ResourceGroup(_) | Route::Cluster(_)) => Ok(()),
            Ok(_) => return None,
            Err(e) => Err(e),
        },
    };
    let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
    let route = scope_ok.map(|()| match rest {
        [kind] if is(kind, "roleAssignments") => Some(Route::RoleAssignments(scope_path.clone())),
        [kind, name] if is(kind, "roleAssignments") => {
            Some(Route::RoleAssignment(scope_path.clone(), name.to_lowercase()))
        }
        [kind] if is(kind, "roleDefinitions") => Some(Route::RoleDefinitions(scope_path.clone())),
        [kind, id] if is(kind, "roleDefinitions") => Some(Route::RoleDefinition(scope_path.clone(), id.to_lowercase())),
        _ => None,
    });
    match route {
        Ok(None) => None,
        Ok(Some(route)) => Some(Parsed { namespace: Namespace::Authorization, route: Ok(route) }),
        Err(e) => Some(Parsed { namespace: Namespace::Authorization, route: Err(e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    fn route(path: &str) -> Route {
        parse(path).expect("shape").route.expect("valid")
    }

    #[test]
    fn literal_segments_are_case_insensitive() {
        let a = route(&format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/commandResults/abc"
        ));
        let b = route(&format!(
            "/SUBSCRIPTIONS/{SUB}/resourcegroups/rg/PROVIDERS/microsoft.containerservice/MANAGEDCLUSTERS/c1/COMMANDRESULTS/abc"
        ));
        assert_eq!(a, b);
        assert!(matches!(a, Route::CommandResult(_, ref id) if id.as_str() == "abc"));
    }

    #[test]
    fn actions_and_lists_are_recognised() {
        let mc = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters");
        assert!(matches!(route(&mc), Route::ClustersInGroup(_)));
        assert!(matches!(route(&format!("{mc}/c/runcommand")), Route::ClusterAction(_, ClusterAction::RunCommand)));
        assert!(matches!(
            route(&format!("{mc}/c/listClusterUserCredential")),
            Route::ClusterAction(_, ClusterAction::ListUserCredential)
        ));
        assert!(matches!(
            route(&format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/managedClusters")),
            Route::ClustersInSubscription(_)
        ));
        assert!(matches!(route("/subscriptions"), Route::Subscriptions));
        assert!(matches!(route("/metadata/endpoints"), Route::MetadataEndpoints));
        assert!(parse(&format!("{mc}/c/explode")).is_none());
        assert_eq!(route("//metadata/endpoints"), Route::MetadataEndpoints);
        assert!(matches!(route(&format!("/subscriptions//{SUB}//resourceGroups/")), Route::ResourceGroups(_)));
        assert!(parse("/other").is_none());
    }

    #[test]
    fn malformed_names_keep_the_namespace() {
        let parsed =
            parse("/subscriptions/nope/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c")
                .unwrap();
        assert_eq!(parsed.namespace, Namespace::ContainerService);
        assert!(matches!(parsed.route, Err(ApiError::InvalidSubscriptionId(ref s)) if s == "nope"));
    }

    #[test]
    fn role_assignments_parse_at_every_scope() {
        assert_eq!(
            route("/providers/Microsoft.Authorization/roleAssignments/ABC"),
            Route::RoleAssignment("/".into(), "abc".into())
        );
        let scope = format!("/subscriptions/{SUB}/resourceGroups/rg");
        assert_eq!(
            route(&format!("{scope}/providers/microsoft.authorization/roleDefinitions")),
            Route::RoleDefinitions(scope)
        );
        assert!(parse("/subscriptions/x/providers/Microsoft.Authorization/roleAssignments").unwrap().route.is_err());
        assert!(parse("/providers/Microsoft.Authorization/other").is_none());
    }

    #[test]
    fn fan_out_routes_parse_at_subscription_and_group_scope() {
        let at_sub = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService");
        let at_group = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/microsoft.containerservice");
        assert!(matches!(route(&format!("{at_sub}/runCommand")), Route::FanOut(ScopeRef::Subscription(_))));
        assert!(matches!(route(&format!("{at_group}/RUNCOMMAND")), Route::FanOut(ScopeRef::Group(_))));
        assert!(matches!(route(&format!("{at_sub}/commandRuns")), Route::CommandRuns(_)));
        assert!(
            matches!(route(&format!("{at_group}/commandRuns/ABC")), Route::CommandRun(_, ref id) if id.as_str() == "abc")
        );
        assert!(matches!(route(&format!("{at_sub}/commandRuns/abc/cancel")), Route::CancelCommandRun(..)));
        assert!(parse(&format!("{at_sub}/commandRuns/abc/explode")).is_none());
        assert!(
            matches!(route(&format!("{at_group}/savedCommands/Pods")), Route::SavedCommand(_, ref n) if n == "Pods")
        );
        assert!(matches!(route(&format!("{at_sub}/savedcommands")), Route::SavedCommands(_)));
        assert!(parse(&format!("{at_sub}/savedCommands/bad name")).unwrap().route.is_err());
        assert!(matches!(route(&format!("{at_sub}/managedClusters")), Route::ClustersInSubscription(_)));
        let Route::FanOut(scope) = route(&format!("{at_group}/runCommand")) else { panic!("not a fan-out") };
        assert_eq!(scope.id(), format!("/subscriptions/{SUB}/resourceGroups/rg"));
    }

    #[test]
    fn segments_are_percent_decoded() {
        let Route::ResourceGroup(g) = route(&format!("/subscriptions/{SUB}/resourcegroups/rg%28x%29")) else {
            panic!("not a group")
        };
        assert_eq!(g.group.as_str(), "rg(x)");
    }
}
