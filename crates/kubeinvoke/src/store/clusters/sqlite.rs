//! [`ClusterStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::store::rows::json_text;
use crate::store::sqlite::{SqliteStore, backend, optional_record, records, row};

/// The tag index (see [`tag_rows`]), and the clusters stored before it. SQLite's `lower` folds
/// ASCII only, as [`tag_rows`] does.
pub(in crate::store) const TAGS_MIGRATION: &str = r#"
CREATE TABLE cluster_tags (
    cluster_uid TEXT NOT NULL REFERENCES clusters (uid) ON DELETE CASCADE,
    name_key    TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (cluster_uid, name_key, value)
) WITHOUT ROWID;
CREATE INDEX cluster_tags_by_pair ON cluster_tags (name_key, value);
INSERT OR IGNORE INTO cluster_tags (cluster_uid, name_key, value)
SELECT c.uid, lower(t.key), t.value
  FROM clusters c, json_each(c.document, '$.tags') t
 WHERE json_type(c.document, '$.tags') = 'object' AND t.type = 'text';
"#;

fn write_tags(tx: &Connection, uid: &ClusterUid, document: &Map<String, Value>) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM cluster_tags WHERE cluster_uid = ?1")
        .and_then(|mut delete| delete.execute(params![uid.as_str()]))
        .map_err(backend)?;
    let mut insert = tx
        .prepare_cached("INSERT INTO cluster_tags (cluster_uid, name_key, value) VALUES (?1, ?2, ?3)")
        .map_err(backend)?;
    let (names, values) = tag_rows(document);
    for (name, value) in names.iter().zip(&values) {
        insert.execute(params![uid.as_str(), name, value]).map_err(backend)?;
    }
    Ok(())
}

fn select_cluster(conn: &Connection, c: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
    optional_record(conn, CLUSTER.sqlite(), params![c.subscription.as_str(), c.group.key(), c.name.key()], |r| {
        cluster(r)
    })
}

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>> {
        self.call(move |conn| {
            let key = group.name.to_lowercase();
            let tx = conn.transaction().map_err(backend)?;
            let existing: Option<String> = row(
                &tx,
                "SELECT name FROM resource_groups WHERE subscription_id = ?1 AND name_key = ?2",
                params![group.subscription, key],
                |r| r.get("name"),
            )
            .optional()
            .map_err(backend)?;
            let tags = group.tags.as_ref().map(json_text);
            let name = existing.clone().unwrap_or_else(|| group.name.clone());
            tx.execute(
                "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (subscription_id, name_key) DO UPDATE SET location = ?4, tags = ?5",
                params![group.subscription, key, name, group.location, tags],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Put { created: existing.is_none(), value: GroupRecord { name, ..group } })
        })
        .await
    }

    async fn get_group(&self, subscription: &SubscriptionId, name: &GroupName) -> StoreResult<Option<GroupRecord>> {
        let (sub, key) = (subscription.to_string(), name.key());
        self.read(move |conn| optional_record(conn, GROUP.sqlite(), params![sub, key], |r| group(r)))
    }

    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool> {
        let (sub, key) = (subscription.to_string(), group.key());
        self.call(move |conn| Ok(conn.execute(DELETE_GROUP.sqlite(), params![sub, key]).map_err(backend)? > 0)).await
    }

    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>> {
        let sub = subscription.to_string();
        self.read(move |conn| records(conn, GROUPS.sqlite(), params![sub], |r| group(r)))
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<String>> {
        self.read(|conn| records(conn, SUBSCRIPTIONS.sqlite(), [], |r| r.get("subscription_id").map_err(backend)))
    }

    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let c = &write.cluster;
            let group_exists =
                optional_record(&tx, GROUP.sqlite(), params![c.subscription.as_str(), c.group.key()], |r| group(r))?;
            if group_exists.is_none() {
                return Err(StoreError::GroupNotFound);
            }
            let existing = select_cluster(&tx, c)?;
            let created = existing.is_none();
            let document = json_text(&write.document);
            match existing {
                Some(old) => {
                    tx.execute(
                        "UPDATE clusters SET document = ?2, kubeconfig = COALESCE(?3, kubeconfig) WHERE uid = ?1",
                        params![old.uid, document, write.kubeconfig],
                    )
                    .map_err(backend)?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO clusters (uid, subscription_id, group_key, name_key, name, document, kubeconfig)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            uuid::Uuid::new_v4().to_string(),
                            c.subscription.as_str(),
                            c.group.key(),
                            c.name.key(),
                            c.name.as_str(),
                            document,
                            write.kubeconfig
                        ],
                    )
                    .map_err(backend)?;
                }
            }
            let value = select_cluster(&tx, c)?
                .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("cluster vanished inside its own transaction")))?;
            write_tags(&tx, &value.uid, &write.document)?;
            tx.commit().map_err(backend)?;
            Ok(Put { created, value })
        })
        .await
    }

    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
        let cluster = cluster.clone();
        self.read(move |conn| select_cluster(conn, &cluster))
    }

    async fn cluster_by_uid(&self, uid: &ClusterUid) -> StoreResult<Option<ClusterRecord>> {
        let uid = uid.to_string();
        self.read(move |conn| optional_record(conn, CLUSTER_BY_UID.sqlite(), params![uid], |r| cluster(r)))
    }

    async fn delete_cluster(&self, c: &ClusterRef) -> StoreResult<bool> {
        let params = (c.subscription.to_string(), c.group.key(), c.name.key());
        self.call(move |conn| Ok(conn.execute(DELETE_CLUSTER.sqlite(), params).map_err(backend)? > 0)).await
    }

    async fn list_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        let sub = subscription.to_string();
        let group_key = group.map(GroupName::key);
        let (after_group, after_name) = after.unwrap_or_default();
        self.read(move |conn| {
            let params = params![sub, group_key, after_group, after_name, limit as i64];
            records(conn, CLUSTERS.sqlite(), params, |r| cluster(r))
        })
    }

    async fn list_tagged_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        tags: &[(String, String)],
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        let sub = subscription.to_string();
        let group_key = group.map(GroupName::key);
        let (after_group, after_name) = after.unwrap_or_default();
        let (names, values) = wanted_rows(tags);
        let wanted =
            Value::Array(names.into_iter().zip(values).map(|pair| serde_json::json!([pair.0, pair.1])).collect());
        let wanted = wanted.to_string();
        self.read(move |conn| {
            let params = params![sub, group_key, after_group, after_name, limit as i64, wanted];
            records(conn, TAGGED_CLUSTERS_SQLITE, params, |r| cluster(r))
        })
    }
}
