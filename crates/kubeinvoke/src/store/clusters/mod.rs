//! Resource groups and the clusters registered in them, with each cluster's write-only
//! kubeconfig.

mod postgres;
mod sqlite;

pub(super) use postgres::TAGS_MIGRATION as POSTGRES_TAGS_MIGRATION;
pub(super) use sqlite::TAGS_MIGRATION as SQLITE_TAGS_MIGRATION;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::rows::{Columns, json_map};
use super::sql::Sql;
use super::{Put, StoreError, StoreResult};
use crate::resource::ClusterRef;
use crate::resource::names::{GroupName, SubscriptionId};

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub subscription: String,
    pub name: String,
    pub location: String,
    pub tags: Option<Map<String, Value>>,
}

/// A cluster's internal identity: a re-created cluster of the same name is a new cluster with
/// new results. Only the store makes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterUid(String);

impl ClusterUid {
    pub fn from_text(text: impl Into<String>) -> Self {
        ClusterUid(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClusterUid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct ClusterRecord {
    pub uid: ClusterUid,
    pub subscription: String,
    pub group: String,
    pub name: String,
    /// The resource as the client sent it (minus write-only fields), plus server-owned properties.
    /// Shared: every authenticated read looks its cluster up, and a copy of the document for
    /// each was a measurable part of a read.
    pub document: Arc<Map<String, Value>>,
    pub kubeconfig: Option<Arc<Vec<u8>>>,
}

/// A cluster PUT. `kubeconfig: None` keeps the stored one: clients that GET, edit and PUT a
/// cluster never see the write-only kubeconfig, and must not erase it.
#[derive(Debug, Clone)]
pub struct ClusterWrite {
    pub cluster: ClusterRef,
    pub document: Map<String, Value>,
    pub kubeconfig: Option<Vec<u8>>,
}

/// Position after which a cluster listing continues: (group key, cluster key).
pub type ClusterCursor = (String, String);

#[async_trait]
pub trait ClusterStore: Send + Sync {
    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>>;
    async fn get_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<Option<GroupRecord>>;
    /// Deletes the group with its clusters and their commands; false when it did not exist.
    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool>;
    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>>;
    /// Subscriptions that hold at least one resource group.
    async fn list_subscriptions(&self) -> StoreResult<Vec<String>>;

    /// Creates or replaces a cluster; [`StoreError::GroupNotFound`] when its group is missing.
    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>>;
    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>>;
    /// The cluster with this uid (a re-created cluster of the same name has another).
    async fn cluster_by_uid(&self, uid: &ClusterUid) -> StoreResult<Option<ClusterRecord>>;
    async fn delete_cluster(&self, cluster: &ClusterRef) -> StoreResult<bool>;
    /// Clusters of a subscription (or one group), ordered by group then name, after `after`.
    async fn list_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>>;
    /// Like [`ClusterStore::list_clusters`], only the clusters whose ARM tags hold every pair of
    /// `tags`: names compared ignoring ASCII case (as Azure does), values exactly. Read from the
    /// tag index, so a selection costs what it finds, not the size of the fleet.
    async fn list_tagged_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        tags: &[(String, String)],
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>>;
}

/// The rows of the tag index for a cluster document: each string-valued tag, its name in ASCII
/// lower case. Tags of another type never match a selection, so they are not indexed.
fn tag_rows(document: &Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let Some(Value::Object(tags)) = document.get("tags") else { return Default::default() };
    let mut rows: Vec<(String, &str)> =
        tags.iter().filter_map(|(name, value)| Some((name.to_ascii_lowercase(), value.as_str()?))).collect();
    rows.sort_unstable();
    rows.dedup();
    rows.into_iter().map(|(name, value)| (name, value.to_string())).unzip()
}

/// The wanted pairs as the tag index holds them: names in ASCII lower case.
fn wanted_rows(tags: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    tags.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.clone())).unzip()
}

/// The columns [`group`] reads.
macro_rules! group_columns {
    () => {
        "subscription_id, name, location, tags"
    };
}

fn group(r: &impl Columns) -> Result<GroupRecord, StoreError> {
    Ok(GroupRecord {
        subscription: r.text("subscription_id")?,
        name: r.text("name")?,
        location: r.text("location")?,
        tags: r.opt_text("tags")?.as_deref().map(json_map).transpose()?,
    })
}

/// The columns [`cluster`] reads, of `clusters c`. The group's display name comes from a
/// correlated subquery, not a join: with a join, SQLite re-prepares the statement whenever a
/// bound key changes (constant propagation across the join), which cost a third of a result
/// read's CPU.
macro_rules! cluster_columns {
    () => {
        "c.uid, c.subscription_id,
         (SELECT g.name FROM resource_groups g WHERE g.subscription_id = c.subscription_id AND g.name_key = c.group_key)
           AS group_name,
         c.name, c.document, c.kubeconfig"
    };
}

fn cluster(r: &impl Columns) -> Result<ClusterRecord, StoreError> {
    Ok(ClusterRecord {
        uid: ClusterUid::from_text(r.text("uid")?),
        subscription: r.text("subscription_id")?,
        group: r.text("group_name")?,
        name: r.text("name")?,
        document: Arc::new(json_map(&r.text("document")?)?),
        kubeconfig: r.opt_bytes("kubeconfig")?.map(Arc::new),
    })
}

static GROUP: Sql = Sql::new(concat!(
    "SELECT ",
    group_columns!(),
    " FROM resource_groups WHERE subscription_id = $1 AND name_key = $2"
));
static GROUPS: Sql = Sql::new(concat!(
    "SELECT ",
    group_columns!(),
    " FROM resource_groups WHERE subscription_id = $1 ORDER BY name_key"
));
static DELETE_GROUP: Sql = Sql::new("DELETE FROM resource_groups WHERE subscription_id = $1 AND name_key = $2");
static SUBSCRIPTIONS: Sql = Sql::new("SELECT DISTINCT subscription_id FROM resource_groups ORDER BY subscription_id");
static CLUSTER: Sql = Sql::new(concat!(
    "SELECT ",
    cluster_columns!(),
    " FROM clusters c WHERE c.subscription_id = $1 AND c.group_key = $2 AND c.name_key = $3"
));
static CLUSTER_BY_UID: Sql = Sql::new(concat!("SELECT ", cluster_columns!(), " FROM clusters c WHERE c.uid = $1"));
static DELETE_CLUSTER: Sql =
    Sql::new("DELETE FROM clusters WHERE subscription_id = $1 AND group_key = $2 AND name_key = $3");
/// A page of clusters: `$2` a group key or NULL for all, `($3, $4)` the cursor, `$5` the limit.
static CLUSTERS: Sql = Sql::new(concat!(
    "SELECT ",
    cluster_columns!(),
    " FROM clusters c
     WHERE c.subscription_id = $1
       AND (CAST($2 AS TEXT) IS NULL OR c.group_key = $2)
       AND (c.group_key, c.name_key) > ($3, $4)
     ORDER BY c.group_key, c.name_key
     LIMIT $5"
));
/// PostgreSQL's [`CLUSTERS`] among the clusters carrying every wanted pair: `$6` names, `$7` values.
const TAGGED_CLUSTERS_POSTGRES: &str = concat!(
    "SELECT ",
    cluster_columns!(),
    " FROM clusters c
     WHERE c.subscription_id = $1
       AND (CAST($2 AS TEXT) IS NULL OR c.group_key = $2)
       AND (c.group_key, c.name_key) > ($3, $4)
       AND c.uid IN (
         SELECT t.cluster_uid
           FROM cluster_tags t
           JOIN unnest($6::text[], $7::text[]) WITH ORDINALITY AS w (name_key, value, i)
             ON t.name_key = w.name_key AND t.value = w.value
          GROUP BY t.cluster_uid
         HAVING count(DISTINCT w.i) = cardinality($6::text[]))
     ORDER BY c.group_key, c.name_key
     LIMIT $5"
);
/// SQLite's [`CLUSTERS`] among the clusters carrying every wanted pair: `?6` a JSON array of
/// `[name, value]` pairs.
const TAGGED_CLUSTERS_SQLITE: &str = concat!(
    "SELECT ",
    cluster_columns!(),
    " FROM clusters c
     WHERE c.subscription_id = ?1
       AND (?2 IS NULL OR c.group_key = ?2)
       AND (c.group_key, c.name_key) > (?3, ?4)
       AND c.uid IN (
         SELECT t.cluster_uid
           FROM json_each(?6) w
           JOIN cluster_tags t
             ON t.name_key = json_extract(w.value, '$[0]') AND t.value = json_extract(w.value, '$[1]')
          GROUP BY t.cluster_uid
         HAVING count(DISTINCT w.key) = json_array_length(?6))
     ORDER BY c.group_key, c.name_key
     LIMIT ?5"
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_tag_index_holds_string_tags_with_names_in_ascii_lower_case() {
        let document = json!({"tags": {"Env": "Prod", "ENV": "Prod", "team": "a", "n": 1, "Ärger": "x"}});
        let (names, values) = tag_rows(document.as_object().unwrap());
        assert_eq!(names, ["env", "team", "Ärger"]);
        assert_eq!(values, ["Prod", "a", "x"]);
        assert_eq!(tag_rows(json!({"tags": ["a"]}).as_object().unwrap()), (vec![], vec![]));
        assert_eq!(tag_rows(&Map::new()), (vec![], vec![]));
    }
}
