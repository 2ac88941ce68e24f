//! Azure-style RBAC: built-in and custom role definitions, scope inheritance and action matching.

use crate::store::RoleAssignmentRecord;

/// One of Azure's built-in role definitions: its id, name and action lists.
#[derive(Debug)]
pub(crate) struct BuiltInRole {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
}

pub(crate) const BUILT_IN_ROLES: [BuiltInRole; 5] = [
    BuiltInRole {
        id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        name: "Owner",
        description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[],
    },
    BuiltInRole {
        id: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        name: "Contributor",
        description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            // kubeinvoke's four eyes: whoever may run commands may not also approve them.
            "Microsoft.ContainerService/managedClusters/commandResults/approve/action",
        ],
    },
    BuiltInRole {
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        name: "Reader",
        description: "View all resources, but does not allow you to make any changes.",
        actions: &["*/read"],
        not_actions: &[],
    },
    BuiltInRole {
        id: "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8",
        name: "Azure Kubernetes Service Cluster Admin Role",
        description: "List cluster admin credential action.",
        actions: &[
            "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
            "Microsoft.ContainerService/managedClusters/accessProfiles/listCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
            "Microsoft.ContainerService/managedClusters/runcommand/action",
            "Microsoft.ContainerService/managedClusters/runSavedCommand/action",
            "Microsoft.ContainerService/managedClusters/commandResults/read",
        ],
        not_actions: &[],
    },
    BuiltInRole {
        id: "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
        name: "Azure Kubernetes Service Cluster User Role",
        description: "List cluster user credential action.",
        actions: &[
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
        ],
        not_actions: &[],
    },
];

pub(crate) fn role_by_id(id: &str) -> Option<&'static BuiltInRole> {
    BUILT_IN_ROLES.iter().find(|r| r.id.eq_ignore_ascii_case(id))
}

pub(crate) fn role_by_name(name: &str) -> Option<&'static BuiltInRole> {
    BUILT_IN_ROLES.iter().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// A role name or id (a GUID, or a full roleDefinitions resource id ending in one).
pub(crate) fn resolve_role(name_or_id: &str) -> Option<&'static BuiltInRole> {
    role_by_name(name_or_id).or_else(|| role_by_id(name_or_id.rsplit('/').next().unwrap_or(name_or_id)))
}

impl BuiltInRole {
    pub(crate) fn permits(&self, action: &str) -> bool {
        permits(self.actions, self.not_actions, action)
    }

    pub(crate) fn definition(&self) -> RoleDefinition {
        RoleDefinition {
            id: self.id.to_string(),
            name: self.name.to_string(),
            description: self.description.to_string(),
            custom: false,
            actions: self.actions.iter().map(|a| a.to_string()).collect(),
            not_actions: self.not_actions.iter().map(|a| a.to_string()).collect(),
            assignable_scopes: vec!["/".to_string()],
        }
    }
}

/// A role definition as authorization uses it: built in, or custom (`az role definition create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The GUID.
    pub id: String,
    /// `roleName`.
    pub name: String,
    pub description: String,
    pub custom: bool,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    /// Where it may be assigned (`/` for built-in roles).
    pub assignable_scopes: Vec<String>,
}

impl RoleDefinition {
    pub fn permits(&self, action: &str) -> bool {
        permits(&self.actions, &self.not_actions, action)
    }

    /// Whether an assignment at `scope` is allowed: at or below one of its assignable scopes.
    pub fn assignable_at(&self, scope: &str) -> bool {
        self.assignable_scopes.iter().any(|s| scope_covers(s, scope))
    }
}

fn permits(actions: &[impl AsRef<str>], not_actions: &[impl AsRef<str>], action: &str) -> bool {
    actions.iter().any(|p| action_matches(p.as_ref(), action))
        && !not_actions.iter().any(|p| action_matches(p.as_ref(), action))
}

/// Azure action patterns: `*` matches any run of characters; comparison ignores case.
///
/// Greedy with one backtrack point (the last `*`): linear for the patterns roles hold, where the
/// recursive form tried every split of the action for each `*` on every authorized request.
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.as_bytes(), action.as_bytes());
    let (mut p, mut a) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where the action did when it last did.
    let mut star: Option<(usize, usize)> = None;
    while a < action.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                if p == pattern.len() {
                    return true; // A trailing `*` takes the rest, whatever it is.
                }
                star = Some((p, a));
            }
            Some(c) if c.eq_ignore_ascii_case(&action[a]) => {
                p += 1;
                a += 1;
            }
            _ => match star {
                // The `*` swallows one more character, and matching resumes after it.
                Some((after_star, swallowed_to)) => {
                    p = after_star;
                    a = swallowed_to + 1;
                    star = Some((after_star, a));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether an assignment at `scope` applies to `resource`: the same scope or one above it.
pub(crate) fn scope_covers(scope: &str, resource: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    if scope.is_empty() {
        return true;
    }
    // Compared in place: this runs for every assignment on every authorized request.
    resource.len() >= scope.len()
        && resource.as_bytes()[..scope.len()].eq_ignore_ascii_case(scope.as_bytes())
        && matches!(resource.as_bytes().get(scope.len()), None | Some(b'/'))
}

/// Whether these assignments allow `action` on `resource`; `custom` holds the custom roles they
/// name (built-in roles are known here). An assignment whose role is unknown grants nothing.
pub(crate) fn allows(
    assignments: &[RoleAssignmentRecord],
    custom: &[RoleDefinition],
    action: &str,
    resource: &str,
) -> bool {
    assignments.iter().filter(|a| scope_covers(&a.scope, resource)).any(|a| match role_by_id(&a.role_definition_id) {
        Some(role) => role.permits(action),
        None => custom.iter().any(|role| role.id.eq_ignore_ascii_case(&a.role_definition_id) && role.permits(action)),
    })
}

/// Whether the assignments reach anything at or below `resource` (for listing what one may see).
pub(crate) fn touches(assignments: &[RoleAssignmentRecord], resource: &str) -> bool {
    assignments.iter().any(|a| scope_covers(&a.scope, resource) || scope_covers(resource, &a.scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(scope: &str, role: &str) -> RoleAssignmentRecord {
        RoleAssignmentRecord {
            name: "n".into(),
            scope: scope.into(),
            role_definition_id: role_by_name(role).unwrap().id.into(),
            principal_id: "p".into(),
            principal_type: "ServicePrincipal".into(),
            created_at: 0,
        }
    }

    const MC: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c";
    const RUN: &str = "Microsoft.ContainerService/managedClusters/runcommand/action";
    const READ_RESULTS: &str = "microsoft.containerservice/managedclusters/commandResults/read";

    #[test]
    fn roles_match_azure_semantics() {
        assert!(role_by_name("reader").unwrap().permits(READ_RESULTS));
        assert!(!role_by_name("Reader").unwrap().permits(RUN));
        assert!(role_by_name("Contributor").unwrap().permits(RUN));
        assert!(!role_by_name("Contributor").unwrap().permits("Microsoft.Authorization/roleAssignments/write"));
        assert!(role_by_name("Owner").unwrap().permits("Microsoft.Authorization/roleAssignments/write"));
        let admin = role_by_name("Azure Kubernetes Service Cluster Admin Role").unwrap();
        assert!(admin.permits("MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/RUNCOMMAND/ACTION"));
        assert!(!admin.permits("Microsoft.ContainerService/managedClusters/delete"));
    }

    #[test]
    fn custom_roles_work_like_built_in_ones() {
        let role = RoleDefinition {
            id: "11111111-1111-1111-1111-111111111111".into(),
            name: "Saved command runner".into(),
            description: String::new(),
            custom: true,
            actions: vec!["Microsoft.ContainerService/managedClusters/runSavedCommand/action".into(), "*/read".into()],
            not_actions: vec!["Microsoft.ContainerService/managedClusters/commandResults/*".into()],
            assignable_scopes: vec!["/subscriptions/s".into()],
        };
        let mut grant = assignment("/subscriptions/s/resourceGroups/rg", "Reader");
        grant.role_definition_id = role.id.to_uppercase();
        let custom = [role.clone()];
        let saved = "microsoft.containerservice/managedclusters/runsavedcommand/action";
        assert!(allows(std::slice::from_ref(&grant), &custom, saved, MC));
        assert!(allows(std::slice::from_ref(&grant), &custom, "Microsoft.ContainerService/managedClusters/read", MC));
        assert!(!allows(std::slice::from_ref(&grant), &custom, RUN, MC), "not among its actions");
        assert!(!allows(std::slice::from_ref(&grant), &custom, READ_RESULTS, MC), "removed by notActions");
        assert!(!allows(std::slice::from_ref(&grant), &[], saved, MC), "an unknown role grants nothing");
        assert!(!allows(&[grant], &custom, saved, "/subscriptions/s/resourceGroups/other"), "scope applies");
        assert!(role.assignable_at("/subscriptions/S/resourceGroups/rg") && !role.assignable_at("/subscriptions/t"));
    }

    #[test]
    fn action_patterns_match_like_azure_wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "Microsoft.Compute/read", true),
            ("", "", true),
            ("", "a", false),
            ("Microsoft.Authorization/*/Delete", "microsoft.authorization/roleAssignments/delete", true),
            ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/roleAssignments/write", false),
            ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/delete", false),
            ("*/read", "Microsoft.ContainerService/managedClusters/commandResults/read", true),
            ("*/read", "Microsoft.ContainerService/managedClusters/read/action", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*bc", "abcbc", true),
            ("a**", "a", true),
            ("*a", "bbb", false),
            ("Microsoft.ContainerService/*", "Microsoft.ContainerServiceX/read", false),
        ];
        for (pattern, action, expected) in cases {
            assert_eq!(action_matches(pattern, action), expected, "{pattern:?} against {action:?}");
        }
    }

    #[test]
    fn scopes_inherit_downwards_only() {
        assert!(allows(&[assignment("/", "Reader")], &[], READ_RESULTS, MC));
        assert!(allows(&[assignment("/subscriptions/S/resourcegroups/RG", "Contributor")], &[], RUN, MC));
        assert!(!allows(&[assignment("/subscriptions/s/resourceGroups/rg2", "Owner")], &[], RUN, MC));
        assert!(
            !allows(&[assignment("/subscriptions/s/resourceGroups/r", "Owner")], &[], RUN, MC),
            "prefix is not a parent"
        );
        assert!(!allows(&[assignment(MC, "Owner")], &[], RUN, "/subscriptions/s/resourceGroups/rg"));
        assert!(resolve_role("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7").is_some());
    }
}
