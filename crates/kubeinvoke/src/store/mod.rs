//! The store: the single source of truth for groups, clusters and commands.
//!
//! [`Store`] is the interface every backend implements, one trait per aggregate (`identity`,
//! `clusters`, `commands`, `approvals`, `settings`, `runs`, `documents`, `activity`, `deliveries`), each in
//! its own directory with its SQLite and PostgreSQL halves; `sqlite/` and `postgres/` hold only
//! connections, error classification and migrations. Nothing outside `store/` knows which
//! database is behind it. Command state changes happen only here, through the guarded
//! transitions of [`crate::command::CommandState`].

/// The `Store` accessors of a backend that implements every aggregate itself.
macro_rules! every_aggregate_is_self {
    () => {
        fn identity(&self) -> &dyn IdentityStore {
            self
        }
        fn clusters(&self) -> &dyn ClusterStore {
            self
        }
        fn commands(&self) -> &dyn CommandStore {
            self
        }
        fn approvals(&self) -> &dyn ApprovalStore {
            self
        }
        fn settings(&self) -> &dyn SettingStore {
            self
        }
        fn runs(&self) -> &dyn RunStore {
            self
        }
        fn documents(&self) -> &dyn DocumentStore {
            self
        }
        fn activity(&self) -> &dyn ActivityStore {
            self
        }
        fn deliveries(&self) -> &dyn DeliveryStore {
            self
        }
    };
}

mod activity;
mod approvals;
mod cached;
mod clusters;
mod commands;
mod deliveries;
mod documents;
mod identity;
mod location;
mod postgres;
mod rows;
mod runs;
mod settings;
mod sql;
mod sqlite;

pub use activity::{ActivityStore, CommandEvents, CommandLogRow};
pub use approvals::{ApprovalStore, Decided, HeldCommand};
pub use clusters::{ClusterCursor, ClusterRecord, ClusterStore, ClusterUid, ClusterWrite, GroupRecord};
pub use commands::{CancelRequest, ClaimedCommand, CommandOptions, CommandStore, Lease, NewCommand};
pub use deliveries::{DeliveryState, DeliveryStore};
pub use documents::{DocumentKind, DocumentRecord, DocumentStore};
pub use identity::{IdentityStore, PrincipalRecord, RoleAssignmentRecord};
pub use location::StoreLocation;
pub use postgres::PostgresStore;
pub use runs::{RunStore, TargetStart, TargetWindow};
pub use settings::SettingStore;
pub use sqlite::SqliteStore;

/// How the SQLite backend classifies one of its errors (for the tests of what the API answers).
#[cfg(test)]
pub(crate) fn sqlite_error_for_tests(e: rusqlite::Error) -> StoreError {
    sqlite::backend(e)
}

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
    /// The database's disk is full: nothing more can be written until space is freed; reads go on.
    #[error("the database's disk is full: {0:#}")]
    Full(anyhow::Error),
    #[error("store backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether a PUT created the resource (201) or replaced it (200).
#[derive(Debug, Clone)]
pub struct Put<T> {
    pub created: bool,
    pub value: T,
}

/// The store: one accessor per aggregate, and what concerns the database as a whole.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Service principals and role assignments.
    fn identity(&self) -> &dyn IdentityStore;
    /// Resource groups and clusters.
    fn clusters(&self) -> &dyn ClusterStore;
    /// The command queue, leases and results.
    fn commands(&self) -> &dyn CommandStore;
    /// Commands held for approval and the decisions on them.
    fn approvals(&self) -> &dyn ApprovalStore;
    /// Values every replica agrees on.
    fn settings(&self) -> &dyn SettingStore;
    /// Fan-out runs (`fanout`), kept in the same database.
    fn runs(&self) -> &dyn RunStore;
    /// Saved commands and custom role definitions.
    fn documents(&self) -> &dyn DocumentStore;
    /// The hash-chained activity log.
    fn activity(&self) -> &dyn ActivityStore;
    /// Event subscriptions' delivery state.
    fn deliveries(&self) -> &dyn DeliveryStore;

    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// True when several server processes may share this store (replicas).
    fn is_shared(&self) -> bool;
    /// Wakes `wake` when another process submits work. Processes that do not share the store
    /// learn of submissions in-process, so the default does nothing.
    fn notify_new_work(&self, _wake: std::sync::Arc<tokio::sync::Notify>) {}
}
