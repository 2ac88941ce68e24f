//! The resources kubeinvoke serves, as domain values beneath both the wire layer (`arm/`) and the
//! store: validated names, and references to a resource group, a cluster or a scope.

pub mod location;
pub mod names;
pub mod tags;

use names::{ClusterName, GroupName, SubscriptionId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub subscription: SubscriptionId,
    pub group: GroupName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    pub subscription: SubscriptionId,
    pub group: GroupName,
    pub name: ClusterName,
}

impl ClusterRef {
    pub fn group_ref(&self) -> GroupRef {
        GroupRef { subscription: self.subscription.clone(), group: self.group.clone() }
    }
}

/// Where a fan-out run lives: a subscription or one of its resource groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRef {
    Subscription(SubscriptionId),
    Group(GroupRef),
}

impl ScopeRef {
    pub fn subscription(&self) -> &SubscriptionId {
        match self {
            ScopeRef::Subscription(s) => s,
            ScopeRef::Group(g) => &g.subscription,
        }
    }

    pub fn group(&self) -> Option<&GroupName> {
        match self {
            ScopeRef::Subscription(_) => None,
            ScopeRef::Group(g) => Some(&g.group),
        }
    }

    /// The scope's ARM id.
    pub fn id(&self) -> String {
        match self {
            ScopeRef::Subscription(s) => format!("/subscriptions/{s}"),
            ScopeRef::Group(g) => format!("/subscriptions/{}/resourceGroups/{}", g.subscription, g.group.as_str()),
        }
    }

    /// Whether the cluster lies inside this scope.
    pub fn contains(&self, cluster: &ClusterRef) -> bool {
        cluster.subscription == *self.subscription() && self.group().is_none_or(|g| g.key() == cluster.group.key())
    }
}
