//! The store: the single source of truth for groups, clusters and commands.
//!
//! [`Store`] is the interface every backend implements; nothing outside `store/` knows which
//! database is behind it. Command state changes happen only here, through the guarded
//! transitions of [`crate::command::CommandState`].

mod activity;
mod cached;
mod deliveries;
mod documents;
mod location;
mod postgres;
mod rows;
mod runs;
mod sqlite;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::command::{CommandId, CommandRecord, CommandState, CommandSummary, Outcome};
use crate::resource::ClusterRef;
use crate::resource::names::{GroupName, SubscriptionId};

pub use activity::{ActivityStore, CommandEvents, CommandLogRow};
pub use deliveries::{DeliveryState, DeliveryStore};
pub use documents::{DocumentKind, DocumentRecord, DocumentStore};
pub use location::StoreLocation;
pub use postgres::PostgresStore;
pub use runs::{RunStore, TargetStart};
pub use sqlite::SqliteStore;

/// Opens the store `location` names (SQLite lives in `data_dir`), applying pending migrations;
/// with `read_cache`, behind the read cache (`cached.rs`).
pub async fn open(
    location: &StoreLocation,
    data_dir: &std::path::Path,
    read_cache: bool,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(match location {
        StoreLocation::Sqlite => with_cache(SqliteStore::open(&data_dir.join("kubeinvoke.db"))?, read_cache),
        StoreLocation::Postgres(url) => with_cache(PostgresStore::connect(url).await?, read_cache),
    })
}

fn with_cache<S: Store>(store: S, read_cache: bool) -> std::sync::Arc<dyn Store> {
    if read_cache { std::sync::Arc::new(cached::CachedStore::new(store)) } else { std::sync::Arc::new(store) }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("resource group not found")]
    GroupNotFound,
    /// The database cannot be reached right now (restarting, network): worth retrying.
    #[error("store unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("store backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

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
    pub document: std::sync::Arc<Map<String, Value>>,
    pub kubeconfig: Option<std::sync::Arc<Vec<u8>>>,
}

/// A cluster PUT. `kubeconfig: None` keeps the stored one: clients that GET, edit and PUT a
/// cluster never see the write-only kubeconfig, and must not erase it.
#[derive(Debug, Clone)]
pub struct ClusterWrite {
    pub cluster: ClusterRef,
    pub document: Map<String, Value>,
    pub kubeconfig: Option<Vec<u8>>,
}

/// Whether a PUT created the resource (201) or replaced it (200).
#[derive(Debug, Clone)]
pub struct Put<T> {
    pub created: bool,
    pub value: T,
}

/// Position after which a cluster listing continues: (group key, cluster key).
pub type ClusterCursor = (String, String);

#[derive(Debug, Clone)]
pub struct NewCommand {
    pub id: CommandId,
    pub cluster_uid: ClusterUid,
    pub command: String,
    /// The validated context zip; empty when no files were attached.
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    pub submitted_at: i64,
    /// Who submitted it (`appId (objectId)`), for the audit trail.
    pub submitted_by: String,
    pub options: CommandOptions,
    /// Set when only this replica may run it (it holds secret parameter values in memory): the
    /// command is written with this owner and lease, renewed like a running one, and ends
    /// `Failed` if the replica goes away before running it.
    pub pinned: Option<Lease>,
}

/// What a command carries beyond its shell line (saved commands, per-request limits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Environment variables for the command (saved command parameters that are not secret).
    pub environment: Vec<(String, String)>,
    /// Names of secret parameters, whose values never reach the store.
    pub secret_names: Vec<String>,
    /// A timeout below the server's and the cluster's.
    pub timeout: Option<std::time::Duration>,
    /// The saved command it runs (its resource id).
    pub saved_command: Option<String>,
}

/// A command a worker now owns (`Running`), with everything it needs to execute.
#[derive(Debug, Clone)]
pub struct ClaimedCommand {
    pub id: CommandId,
    pub command: String,
    pub context: Vec<u8>,
    pub cluster_token: Option<String>,
    pub kubeconfig: Option<Vec<u8>>,
    /// The cluster's settings as they are now; a stored value that cannot be used fails the
    /// command naming it.
    pub settings: Result<crate::cluster_settings::ClusterSettings, crate::cluster_settings::InvalidSetting>,
    pub submitted_by: String,
    pub options: CommandOptions,
}

impl ClaimedCommand {
    /// A command stored `Running` as it was submitted, with its cluster's kubeconfig and
    /// settings document as they are in the same transaction.
    fn submitted(command: NewCommand, kubeconfig: Option<Vec<u8>>, document: Option<&str>) -> Self {
        ClaimedCommand {
            id: command.id,
            command: command.command,
            context: command.context,
            cluster_token: command.cluster_token,
            kubeconfig,
            settings: settings_of(document),
            submitted_by: command.submitted_by,
            options: command.options,
        }
    }
}

/// Who is claiming work and for how long: a replica owns a `Running` command only while its
/// lease is renewed.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The replica's id (stable across its restarts).
    pub owner: String,
    pub now: i64,
    pub until: i64,
}

/// A cancel asked of a command that runs on another replica, picked up by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub id: CommandId,
    pub by: String,
}

/// A service principal; the secret itself is never stored.
#[derive(Debug, Clone)]
pub struct PrincipalRecord {
    pub app_id: String,
    pub object_id: String,
    pub display_name: String,
    pub secret_salt: Vec<u8>,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
}

/// `(principal, role, scope)`, as Microsoft.Authorization/roleAssignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignmentRecord {
    /// The assignment's name: a GUID chosen by the client.
    pub name: String,
    /// The scope as given (`/`, a subscription, a group or a resource).
    pub scope: String,
    /// The role definition's GUID.
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub created_at: i64,
}

/// A claimed command's cluster settings, from the cluster document's text as stored.
fn settings_of(
    document: Option<&str>,
) -> Result<crate::cluster_settings::ClusterSettings, crate::cluster_settings::InvalidSetting> {
    use crate::cluster_settings::{ClusterSettings, InvalidSetting};
    let Some(text) = document else { return Ok(ClusterSettings::default()) };
    let parsed: Map<String, Value> = serde_json::from_str(text).map_err(|e| InvalidSetting {
        property: "properties",
        message: format!("the stored cluster is unreadable: {e}"),
    })?;
    ClusterSettings::from_document(&parsed)
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_principal(&self, principal: PrincipalRecord) -> StoreResult<()>;
    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>>;
    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>>;
    /// Deletes a principal and its role assignments; false when it did not exist.
    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool>;

    /// Creates an assignment, or returns the existing one of that name unchanged (`created: false`).
    async fn put_role_assignment(&self, assignment: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>>;
    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>>;
    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>>;
    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>>;
    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<std::sync::Arc<[RoleAssignmentRecord]>>;

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
    async fn delete_cluster(&self, cluster: &ClusterRef) -> StoreResult<bool>;
    /// Clusters of a subscription (or one group), ordered by group then name, after `after`.
    async fn list_clusters(
        &self,
        subscription: &SubscriptionId,
        group: Option<&GroupName>,
        after: Option<ClusterCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ClusterRecord>>;

    async fn insert_command(&self, command: NewCommand) -> StoreResult<()>;
    /// Stores a new command already `Running` under `lease` and hands it over as
    /// [`Store::claim_next`] would: for a replica with an idle worker and nothing queued, one
    /// durable write instead of an insert and then a claim. The owner is `lease`'s (a command's
    /// `pinned` lease names the same replica).
    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand>;
    /// A command of this cluster that has not expired at `now`.
    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>>;
    /// Atomically moves the oldest `Accepted` command that is not pinned to another replica to
    /// `Running` under `lease` and hands it over; no two claims ever get the same command.
    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>>;
    /// Extends the lease of every command `owner` runs or holds pinned; returns cancels asked of
    /// them elsewhere.
    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>>;
    /// Ends `Failed`/`WorkerLost` every `Running` command (and pinned `Accepted` one) whose lease
    /// ran out; returns their ids.
    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>>;
    /// Asks the owner of a running command to cancel it; false when it is not running.
    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool>;
    /// Moves a `Running` command to its terminal state; false when it was not running
    /// (already finished, or deleted with its cluster).
    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool>;
    /// Cancels a command that no worker has claimed yet (`Accepted → Canceled`). Returns the
    /// state it was in, or `None` when it does not exist (for this cluster).
    async fn cancel_queued(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<CommandState>>;
    /// A cluster's commands, newest first, older than `before` (a `seq`), at most `limit`.
    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>>;
    /// Ends `Failed`/`Interrupted` the `Running` commands of `owner` (and those of no owner), and
    /// `Failed`/`SecretsLost` the `Accepted` ones pinned to it: run when a replica starts, since
    /// nothing it ran or held in memory survived its restart.
    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64>;
    /// Deletes finished commands whose retention ended; returns their ids.
    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>>;
    async fn count_accepted(&self) -> StoreResult<usize>;
    /// Ids of every `Running` command (of every replica), for the sweeper.
    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>>;

    /// Stores `candidate` under `name` unless a value is there already; returns the stored
    /// value. How replicas agree on one signing key and one bootstrap admin.
    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>>;
    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// True when several server processes may share this store (replicas).
    fn is_shared(&self) -> bool;
    /// Wakes `wake` when another process submits work. Processes that do not share the store
    /// learn of submissions in-process, so the default does nothing.
    fn notify_new_work(&self, _wake: std::sync::Arc<tokio::sync::Notify>) {}
    /// Fan-out runs (`fanout`), kept in the same database.
    fn runs(&self) -> &dyn RunStore;
    /// Saved commands and custom role definitions.
    fn documents(&self) -> &dyn DocumentStore;
    /// The hash-chained activity log.
    fn activity(&self) -> &dyn ActivityStore;
    /// Event subscriptions' delivery state.
    fn deliveries(&self) -> &dyn DeliveryStore;
}
