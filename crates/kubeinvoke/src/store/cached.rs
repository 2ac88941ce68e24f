//! A read cache in front of the store.
//!
//! Every authenticated request looks up the cluster and the caller's role assignments: database
//! round trips for data that rarely changes. Here both are kept until this process writes them.
//! Finished results are not cached here but once, as the bytes last sent
//! (`server/rendered.rs`), which also spares their serialisation.
//!
//! Writes this process does not see — `kubeinvoke sp` from another process on SQLite, other
//! replicas on PostgreSQL — apply after [`SHARED_TTL`]: clusters and assignments are re-read
//! after it. During a database outage, what was read within the TTL is still served.
//!
//! A read that races a write must not put the old value back after the write invalidated it: each
//! cache has a generation, bumped by every invalidation, and a value read from the store is kept
//! only if the generation did not move meanwhile.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;
use crate::resource::ClusterRef;
use crate::resource::names::{GroupName, SubscriptionId};

/// Entries per map at most; over it the map starts afresh.
const ENTRIES: usize = 10_000;
/// How long a cluster, an assignment list (or, on a shared store, a result) is served without
/// asking the store again.
pub(super) const SHARED_TTL: Duration = Duration::from_secs(1);

pub(super) struct CachedStore<S> {
    inner: S,
    clusters: Generational<String, ClusterRecord>,
    assignments: Generational<String, Arc<[RoleAssignmentRecord]>>,
}

/// (generation, entries with the time they were read, bytes held).
type Entries<K, V> = (u64, HashMap<K, (V, Instant), foldhash::fast::RandomState>, usize);

struct Generational<K, V> {
    state: Mutex<Entries<K, V>>,
    /// Entries older than this are read again.
    ttl: Option<Duration>,
}

impl<K: Eq + Hash, V: Clone> Generational<K, V> {
    fn new(ttl: Option<Duration>) -> Self {
        Generational { state: Mutex::new((0, HashMap::default(), 0)), ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value, or the generation to pass to [`Generational::keep`].
    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Result<V, u64>
    where
        K: Borrow<Q>,
    {
        let state = self.lock();
        match state.1.get(key) {
            Some((value, read)) if self.ttl.is_none_or(|ttl| read.elapsed() < ttl) => Ok(value.clone()),
            _ => Err(state.0),
        }
    }

    fn keep(&self, generation: u64, key: K, value: V, bytes: usize, max_bytes: usize) {
        let mut state = self.lock();
        if state.0 != generation {
            return;
        }
        if state.1.len() >= ENTRIES || state.2 + bytes > max_bytes {
            state.1.clear();
            state.2 = 0;
        }
        state.2 += bytes;
        state.1.insert(key, (value, Instant::now()));
    }

    fn invalidate(&self) {
        let mut state = self.lock();
        state.0 += 1;
        state.1.clear();
        state.2 = 0;
    }
}

impl<S: Store> CachedStore<S> {
    pub(super) fn new(inner: S) -> Self {
        CachedStore {
            inner,
            clusters: Generational::new(Some(SHARED_TTL)),
            assignments: Generational::new(Some(SHARED_TTL)),
        }
    }

    /// Clusters and groups changed: the cached clusters are stale.
    fn clusters_changed(&self) {
        self.clusters.invalidate();
    }
}

/// Subscription, group and cluster name, lowercased as their `key()`s are, in one string: one
/// allocation per lookup (every authenticated read makes one) when the names are lowercase.
fn cluster_key(c: &ClusterRef) -> String {
    use crate::resource::names::lowercase;
    [c.subscription.as_str(), "/", &lowercase(c.group.as_str()), "/", &lowercase(c.name.as_str())].concat()
}

#[async_trait]
impl<S: Store> IdentityStore for CachedStore<S> {
    async fn create_principal(&self, principal: PrincipalRecord) -> StoreResult<()> {
        self.inner.identity().create_principal(principal).await
    }

    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>> {
        self.inner.identity().principal_by_app_id(app_id).await
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        self.inner.identity().list_principals().await
    }

    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool> {
        let deleted = self.inner.identity().delete_principal(app_id).await;
        self.assignments.invalidate();
        deleted
    }

    async fn put_role_assignment(&self, assignment: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>> {
        let put = self.inner.identity().put_role_assignment(assignment).await;
        self.assignments.invalidate();
        put
    }

    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        self.inner.identity().get_role_assignment(name).await
    }

    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let deleted = self.inner.identity().delete_role_assignment(name).await;
        self.assignments.invalidate();
        deleted
    }

    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>> {
        self.inner.identity().list_role_assignments().await
    }

    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>> {
        let key = crate::resource::names::lowercase(principal_id);
        let generation = match self.assignments.get(key.as_ref()) {
            Ok(cached) => return Ok(cached),
            Err(generation) => generation,
        };
        let assignments = self.inner.identity().role_assignments_of(&key).await?;
        self.assignments.keep(generation, key.into_owned(), assignments.clone(), 0, usize::MAX);
        Ok(assignments)
    }
}

#[async_trait]
impl<S: Store> ClusterStore for CachedStore<S> {
    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>> {
        let put = self.inner.clusters().put_group(group).await;
        self.clusters_changed();
        put
    }

    async fn get_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<Option<GroupRecord>> {
        self.inner.clusters().get_group(subscription, group).await
    }

    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool> {
        let deleted = self.inner.clusters().delete_group(subscription, group).await;
        self.clusters_changed();
        deleted
    }

    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>> {
        self.inner.clusters().list_groups(subscription).await
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<String>> {
        self.inner.clusters().list_subscriptions().await
    }

    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>> {
        let put = self.inner.clusters().put_cluster(write).await;
        self.clusters_changed();
        put
    }

    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
        let key = cluster_key(cluster);
        let generation = match self.clusters.get(&key) {
            Ok(cached) => return Ok(Some(cached)),
            Err(generation) => generation,
        };
        let found = self.inner.clusters().get_cluster(cluster).await?;
        if let Some(record) = &found {
            self.clusters.keep(generation, key, record.clone(), 0, usize::MAX);
        }
        Ok(found)
    }

    /// Not cached: asked once per fan-out target, which must see the settings as they are now.
    async fn cluster_by_uid(&self, uid: &ClusterUid) -> StoreResult<Option<ClusterRecord>> {
        self.inner.clusters().cluster_by_uid(uid).await
    }

    async fn delete_cluster(&self, cluster: &ClusterRef) -> StoreResult<bool> {
        let deleted = self.inner.clusters().delete_cluster(cluster).await;
        self.clusters_changed();
        deleted
    }

    async fn list_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        self.inner.clusters().list_clusters(subscription, group, after, limit).await
    }

    async fn list_tagged_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        tags: &[(String, String)],
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>> {
        self.inner.clusters().list_tagged_clusters(subscription, group, tags, after, limit).await
    }
}

/// Clusters and assignments through the caches; every other aggregate straight to the store.
#[async_trait]
impl<S: Store> Store for CachedStore<S> {
    fn identity(&self) -> &dyn IdentityStore {
        self
    }
    fn clusters(&self) -> &dyn ClusterStore {
        self
    }
    fn commands(&self) -> &dyn CommandStore {
        self.inner.commands()
    }
    fn approvals(&self) -> &dyn ApprovalStore {
        self.inner.approvals()
    }
    fn settings(&self) -> &dyn SettingStore {
        self.inner.settings()
    }
    fn runs(&self) -> &dyn RunStore {
        self.inner.runs()
    }
    fn documents(&self) -> &dyn DocumentStore {
        self.inner.documents()
    }
    fn activity(&self) -> &dyn ActivityStore {
        self.inner.activity()
    }
    fn deliveries(&self) -> &dyn DeliveryStore {
        self.inner.deliveries()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn notify_new_work(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        self.inner.notify_new_work(wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(name: &str, principal: &str) -> RoleAssignmentRecord {
        RoleAssignmentRecord {
            name: name.into(),
            scope: "/".into(),
            role_definition_id: "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(),
            principal_id: principal.into(),
            principal_type: "ServicePrincipal".into(),
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn own_writes_apply_at_once_and_another_process_writes_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeinvoke.db");
        let cached = CachedStore::new(crate::store::SqliteStore::open(&path).unwrap());
        cached.put_role_assignment(assignment("a1", "p")).await.unwrap();
        assert_eq!(cached.role_assignments_of("p").await.unwrap().len(), 1);
        cached.put_role_assignment(assignment("a2", "p")).await.unwrap();
        assert_eq!(cached.role_assignments_of("p").await.unwrap().len(), 2, "own writes invalidate");

        // `kubeinvoke sp delete` from another process, on the same file.
        let other = crate::store::SqliteStore::open(&path).unwrap();
        other.identity().delete_role_assignment("a1").await.unwrap();
        tokio::time::sleep(SHARED_TTL + Duration::from_millis(50)).await;
        assert_eq!(cached.role_assignments_of("p").await.unwrap().len(), 1, "seen after the TTL");
    }
}
