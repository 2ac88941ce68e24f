//! [`ClusterStore`] on PostgreSQL.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::*;
use crate::store::postgres::{PostgresStore, db_error, records};
use crate::store::rows::json_text;

/// The tag index (see [`tag_rows`]), and the clusters stored before it. A document holding an
/// escaped NUL cannot be read as `json` text here; such a tag could never be written (a cluster
/// PUT refuses control characters in tags), so those documents are left out.
pub(in crate::store) const TAGS_MIGRATION: &str = r#"
CREATE TABLE cluster_tags (
    cluster_uid TEXT NOT NULL REFERENCES clusters (uid) ON DELETE CASCADE,
    name_key    TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (cluster_uid, name_key, value)
);
CREATE INDEX cluster_tags_by_pair ON cluster_tags (name_key, value);
INSERT INTO cluster_tags (cluster_uid, name_key, value)
SELECT DISTINCT c.uid, lower(t.key COLLATE "C"), t.value #>> '{}'
  FROM (SELECT uid, document::json -> 'tags' AS tags FROM clusters
         WHERE document NOT LIKE '%\u0000%') c
 CROSS JOIN LATERAL json_each(CASE WHEN json_typeof(c.tags) = 'object' THEN c.tags ELSE '{}'::json END) t
 WHERE json_typeof(t.value) = 'string';
"#;

async fn select_cluster(client: &(impl CachedQueries + Sync), c: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
    let row = client
        .query_opt_cached(CLUSTER.postgres(), &[&c.subscription.as_str(), &c.group.key(), &c.name.key()])
        .await
        .map_err(db_error)?;
    row.as_ref().map(cluster).transpose()
}

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>> {
        let client = self.client().await?;
        let tags = group.tags.as_ref().map(json_text);
        // `xmax = 0` only for a row this statement inserted; an update keeps the stored casing.
        let row = client
            .query_one_cached(
                "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (subscription_id, name_key) DO UPDATE SET location = EXCLUDED.location, tags = EXCLUDED.tags
                 RETURNING name, (xmax = 0) AS created",
                &[&group.subscription, &group.name.to_lowercase(), &group.name, &group.location, &tags],
            )
            .await
            .map_err(db_error)?;
        Ok(Put { created: row.boolean("created")?, value: GroupRecord { name: row.text("name")?, ..group } })
    }

    async fn get_group(&self, subscription: &SubscriptionId, name: &GroupName) -> StoreResult<Option<GroupRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt_cached(GROUP.postgres(), &[&subscription.as_str(), &name.key()])
            .await
            .map_err(db_error)?;
        row.as_ref().map(group).transpose()
    }

    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute_cached(DELETE_GROUP.postgres(), &[&subscription.as_str(), &group.key()])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>> {
        let client = self.client().await?;
        records(&client.query_cached(GROUPS.postgres(), &[&subscription.as_str()]).await.map_err(db_error)?, group)
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        records(&client.query_cached(SUBSCRIPTIONS.postgres(), &[]).await.map_err(db_error)?, |r| {
            r.text("subscription_id")
        })
    }

    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>> {
        let mut client = self.client().await?;
        let c = &write.cluster;
        let tx = client.transaction().await.map_err(db_error)?;
        let upsert = tx
            .query_one_cached(
                "INSERT INTO clusters (uid, subscription_id, group_key, name_key, name, document, kubeconfig)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (subscription_id, group_key, name_key) DO UPDATE
                   SET document = EXCLUDED.document, kubeconfig = COALESCE(EXCLUDED.kubeconfig, clusters.kubeconfig)
                 RETURNING (xmax = 0) AS created",
                &[
                    &uuid::Uuid::new_v4().to_string(),
                    &c.subscription.as_str(),
                    &c.group.key(),
                    &c.name.key(),
                    &c.name.as_str(),
                    &json_text(&write.document),
                    &write.kubeconfig,
                ],
            )
            .await;
        let created = match upsert {
            Ok(row) => row.boolean("created")?,
            Err(e) if e.as_db_error().is_some_and(|db| db.code().code() == "23503") => {
                return Err(StoreError::GroupNotFound);
            }
            Err(e) => return Err(db_error(e)),
        };
        let value = select_cluster(&tx, c)
            .await?
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("cluster vanished inside its own transaction")))?;
        let (names, values) = tag_rows(&write.document);
        tx.execute_cached("DELETE FROM cluster_tags WHERE cluster_uid = $1", &[&value.uid.as_str()])
            .await
            .map_err(db_error)?;
        tx.execute_cached(
            "INSERT INTO cluster_tags (cluster_uid, name_key, value) SELECT $1::text, * FROM unnest($2::text[], $3::text[])",
            &[&value.uid.as_str(), &names, &values],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Put { created, value })
    }

    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
        let client = self.client().await?;
        select_cluster(&client, cluster).await
    }

    async fn cluster_by_uid(&self, uid: &ClusterUid) -> StoreResult<Option<ClusterRecord>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(CLUSTER_BY_UID.postgres(), &[&uid.as_str()]).await.map_err(db_error)?;
        row.as_ref().map(cluster).transpose()
    }

    async fn delete_cluster(&self, c: &ClusterRef) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute_cached(DELETE_CLUSTER.postgres(), &[&c.subscription.as_str(), &c.group.key(), &c.name.key()])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn list_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        let client = self.client().await?;
        let group_key = group.map(GroupName::key);
        let (after_group, after_name) = after.unwrap_or_default();
        let rows = client
            .query_cached(
                CLUSTERS.postgres(),
                &[&subscription.as_str(), &group_key, &after_group, &after_name, &(limit as i64)],
            )
            .await
            .map_err(db_error)?;
        records(&rows, cluster)
    }

    async fn list_tagged_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        tags: &[(String, String)],
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        let client = self.client().await?;
        let group_key = group.map(GroupName::key);
        let (after_group, after_name) = after.unwrap_or_default();
        let (names, values) = wanted_rows(tags);
        let rows = client
            .query_cached(
                TAGGED_CLUSTERS_POSTGRES,
                &[&subscription.as_str(), &group_key, &after_group, &after_name, &(limit as i64), &names, &values],
            )
            .await
            .map_err(db_error)?;
        records(&rows, cluster)
    }
}
