//! The embedded backend: SQLite in WAL mode, one writer connection on tokio's blocking pool and
//! a few reader connections used inline (reads are short point lookups on cached statements).
//!
//! One writer serialises writes, which SQLite does anyway; WAL lets the readers go on meanwhile.
//! `synchronous = FULL` so an acknowledged submission or result survives a power cut, not just a
//! process crash.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{self, ASSIGNMENT_COLUMNS, COMMAND_COLUMNS, Columns, PRINCIPAL_COLUMNS, json_map, json_text};
use super::*;
use crate::command::{CommandState, FailureReason};

/// Ordered schema migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL,
    name_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    location        TEXT NOT NULL,
    tags            TEXT,
    PRIMARY KEY (subscription_id, name_key)
);
CREATE TABLE clusters (
    uid             TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    name_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    document        TEXT NOT NULL,
    kubeconfig      BLOB,
    UNIQUE (subscription_id, group_key, name_key),
    FOREIGN KEY (subscription_id, group_key)
        REFERENCES resource_groups (subscription_id, name_key) ON DELETE CASCADE
);
CREATE TABLE commands (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    cluster_uid   TEXT NOT NULL REFERENCES clusters (uid) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    command       TEXT NOT NULL,
    context       BLOB,
    cluster_token TEXT,
    submitted_at  INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    exit_code     INTEGER,
    logs          TEXT,
    reason        TEXT,
    expires_at    INTEGER
);
CREATE INDEX commands_by_state ON commands (state, seq);
CREATE INDEX commands_by_expiry ON commands (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX commands_by_cluster ON commands (cluster_uid);
"#,
    r#"
CREATE TABLE principals (
    app_id       TEXT PRIMARY KEY,
    object_id    TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    secret_salt  BLOB NOT NULL,
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE role_assignments (
    name               TEXT PRIMARY KEY,
    scope              TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id       TEXT NOT NULL,
    principal_type     TEXT NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id);
"#,
    r#"
ALTER TABLE commands ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
"#,
    r#"
ALTER TABLE commands ADD COLUMN owner TEXT;
ALTER TABLE commands ADD COLUMN lease_until INTEGER;
ALTER TABLE commands ADD COLUMN cancel_requested_by TEXT;
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#,
    // A partial index made SQLite re-prepare every statement comparing `expires_at` with a bound
    // `now` (each new value might change whether the index applies): 30% of a result read's CPU.
    r#"
DROP INDEX commands_by_expiry;
CREATE INDEX commands_by_expiry ON commands (expires_at);
"#,
    super::runs::SQLITE_MIGRATION,
    super::documents::SQLITE_MIGRATION,
    r#"
ALTER TABLE commands ADD COLUMN environment TEXT;
ALTER TABLE commands ADD COLUMN secret_names TEXT;
ALTER TABLE commands ADD COLUMN timeout_ms INTEGER;
ALTER TABLE commands ADD COLUMN saved_command TEXT;
"#,
    super::activity::SQLITE_MIGRATION,
    super::deliveries::SQLITE_MIGRATION,
];

/// Connections that only read, beside the one writer (WAL lets them run concurrently).
const READERS: usize = 4;

#[derive(Clone)]
pub struct SqliteStore {
    /// The one writer, used on the blocking pool: a commit waits for the disk.
    conn: Arc<Mutex<Connection>>,
    /// Point lookups take microseconds, so they run inline on the calling task: hopping to the
    /// blocking pool and back cost more than the query (the profile of result reads said so).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
                reader.pragma_update(None, "query_only", "ON")?;
                // Pages read through the mapping, not copied in by a syscall each: random reads
                // over a large database were 1.3× slower without it.
                reader.pragma_update(None, "mmap_size", 0x7fff_0000_i64)?;
                reader.busy_timeout(std::time::Duration::from_secs(5))?;
                reader.set_prepared_statement_cache_capacity(64);
                Ok(Mutex::new(reader))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            next_reader: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// Runs a read on a free reader connection, inline.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> StoreResult<T> {
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            if let Ok(reader) = self.readers[(start + offset) % self.readers.len()].try_lock() {
                return f(&reader);
            }
        }
        let reader = self.readers[start % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        f(&reader)
    }

    pub(super) async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("store task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let applied = usize::try_from(applied).context("negative schema version")?;
    anyhow::ensure!(
        applied <= MIGRATIONS.len(),
        "the database has schema version {applied}, newer than this binary knows ({})",
        MIGRATIONS.len()
    );
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).with_context(|| format!("migration {}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Writes a new command's row in `state`; `owner` is the lease of the replica that runs it (or
/// holds it pinned).
fn insert_command_row(
    conn: &Connection,
    command: &NewCommand,
    state: CommandState,
    started_at: Option<i64>,
    owner: Option<&Lease>,
) -> Result<(), StoreError> {
    let (environment, secrets, timeout_ms) = rows::option_columns(&command.options);
    conn.prepare_cached(
        "INSERT INTO commands (id, cluster_uid, state, command, context, cluster_token, submitted_at, submitted_by,
                               environment, secret_names, timeout_ms, saved_command, owner, lease_until, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            command.id,
            command.cluster_uid,
            state.as_str(),
            command.command,
            command.context,
            command.cluster_token,
            command.submitted_at,
            command.submitted_by,
            environment,
            secrets,
            timeout_ms,
            command.options.saved_command,
            owner.map(|l| &l.owner),
            owner.map(|l| l.until),
            started_at
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// What running a command of this cluster needs from it: its kubeconfig and settings document.
fn cluster_run_inputs(conn: &Connection, cluster_uid: &str) -> Result<(Option<Vec<u8>>, Option<String>), StoreError> {
    let found = row(conn, "SELECT kubeconfig, document FROM clusters WHERE uid = ?1", params![cluster_uid], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map_err(backend)?;
    Ok(found.unwrap_or_default())
}

/// `query_row` through the statement cache: the same few statements run on every request.
fn row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.into())
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<(GroupRecord, Option<String>)> {
    Ok((GroupRecord { subscription: row.get(0)?, name: row.get(1)?, location: row.get(2)?, tags: None }, row.get(3)?))
}

fn finish_group((mut group, tags): (GroupRecord, Option<String>)) -> Result<GroupRecord, StoreError> {
    group.tags = tags.as_deref().map(json_map).transpose()?;
    Ok(group)
}

/// The group's display name comes from a correlated subquery, not a join: with a join, SQLite
/// 3.54 re-prepares the statement whenever a bound key changes (constant propagation across
/// the join), which cost a third of a result read's CPU. The same holds for `ORDER BY` after an
/// equality on a bound value, so small result sets are sorted here instead.
const CLUSTER_COLUMNS: &str = "c.uid, c.subscription_id,
    (SELECT g.name FROM resource_groups g WHERE g.subscription_id = c.subscription_id AND g.name_key = c.group_key),
    c.name, c.document, c.kubeconfig";

fn cluster_from_row(row: &Row<'_>) -> rusqlite::Result<(ClusterRecord, String)> {
    Ok((
        ClusterRecord {
            uid: row.get(0)?,
            subscription: row.get(1)?,
            group: row.get(2)?,
            name: row.get(3)?,
            document: Default::default(),
            kubeconfig: row.get::<_, Option<Vec<u8>>>(5)?.map(Arc::new),
        },
        row.get(4)?,
    ))
}

fn finish_cluster((mut cluster, document): (ClusterRecord, String)) -> Result<ClusterRecord, StoreError> {
    cluster.document = Arc::new(json_map(&document)?);
    Ok(cluster)
}

fn select_cluster(conn: &Connection, cluster: &ClusterRef) -> Result<Option<ClusterRecord>, StoreError> {
    let sql = format!(
        "SELECT {CLUSTER_COLUMNS} FROM clusters c
         WHERE c.subscription_id = ?1 AND c.group_key = ?2 AND c.name_key = ?3"
    );
    row(conn, &sql, params![cluster.subscription.as_str(), cluster.group.key(), cluster.name.key()], cluster_from_row)
        .optional()
        .map_err(backend)?
        .map(finish_cluster)
        .transpose()
}

fn query_assignments(
    conn: &Connection,
    filter: &str,
    param: Option<&str>,
) -> Result<Vec<RoleAssignmentRecord>, StoreError> {
    let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments {filter}");
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = match param {
        Some(p) => stmt.query_map(params![p], assignment_row),
        None => stmt.query_map([], assignment_row),
    }
    .map_err(backend)?;
    let mut assignments: Vec<RoleAssignmentRecord> = rows.map(flatten).collect::<Result<_, _>>()?;
    assignments.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    Ok(assignments)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        self.call(move |conn| {
            conn.execute(
                &format!("INSERT INTO principals ({PRINCIPAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![p.app_id, p.object_id, p.display_name, p.secret_salt, p.secret_hash, p.created_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>> {
        let app_id = app_id.to_lowercase();
        self.read(move |conn| {
            row(conn, &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE app_id = ?1"), params![app_id], |r| {
                Ok(rows::principal(r))
            })
            .optional()
            .map_err(backend)?
            .transpose()
        })
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY created_at, app_id"))
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| Ok(rows::principal(r))).map_err(backend)?;
            rows.map(flatten).collect()
        })
    }

    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool> {
        let app_id = app_id.to_lowercase();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute(
                "DELETE FROM role_assignments WHERE principal_id IN (SELECT object_id FROM principals WHERE app_id = ?1)",
                params![app_id],
            )
            .map_err(backend)?;
            let n = tx.execute("DELETE FROM principals WHERE app_id = ?1", params![app_id]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_role_assignment(&self, a: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO role_assignments ({ASSIGNMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ),
                    params![a.name, a.scope, a.role_definition_id, a.principal_id, a.principal_type, a.created_at],
                )
                .map_err(backend)?;
            let stored = query_assignments(conn, "WHERE name = ?1", Some(&a.name))?
                .pop()
                .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("role assignment vanished")))?;
            Ok(Put { created: n > 0, value: stored })
        })
        .await
    }

    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let name = name.to_lowercase();
        self.read(move |conn| Ok(query_assignments(conn, "WHERE name = ?1", Some(&name))?.pop()))
    }

    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let name = name.to_lowercase();
        self.call(move |conn| {
            let found = query_assignments(conn, "WHERE name = ?1", Some(&name))?.pop();
            conn.execute("DELETE FROM role_assignments WHERE name = ?1", params![name]).map_err(backend)?;
            Ok(found)
        })
        .await
    }

    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>> {
        self.read(|conn| query_assignments(conn, "", None))
    }

    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>> {
        let principal_id = principal_id.to_lowercase();
        self.read(move |conn| query_assignments(conn, "WHERE principal_id = ?1", Some(&principal_id))).map(Arc::from)
    }

    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>> {
        self.call(move |conn| {
            let key = group.name.to_lowercase();
            let tx = conn.transaction().map_err(backend)?;
            let existing: Option<String> = row(
                &tx,
                "SELECT name FROM resource_groups WHERE subscription_id = ?1 AND name_key = ?2",
                params![group.subscription, key],
                |r| r.get(0),
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

    async fn get_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<Option<GroupRecord>> {
        let (sub, key) = (subscription.to_string(), group.key());
        self.read(move |conn| {
            row(
                conn,
                "SELECT subscription_id, name, location, tags FROM resource_groups
                 WHERE subscription_id = ?1 AND name_key = ?2",
                params![sub, key],
                group_from_row,
            )
            .optional()
            .map_err(backend)?
            .map(finish_group)
            .transpose()
        })
    }

    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool> {
        let (sub, key) = (subscription.to_string(), group.key());
        self.call(move |conn| {
            let n = conn
                .execute("DELETE FROM resource_groups WHERE subscription_id = ?1 AND name_key = ?2", params![sub, key])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>> {
        let sub = subscription.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT subscription_id, name, location, tags FROM resource_groups
                     WHERE subscription_id = ?1 ORDER BY name_key",
                )
                .map_err(backend)?;
            let rows = stmt.query_map(params![sub], group_from_row).map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(finish_group)).collect()
        })
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT subscription_id FROM resource_groups ORDER BY subscription_id")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let c = &write.cluster;
            let group_exists: bool = row(
                &tx,
                "SELECT 1 FROM resource_groups WHERE subscription_id = ?1 AND name_key = ?2",
                params![c.subscription.as_str(), c.group.key()],
                |_| Ok(true),
            )
            .optional()
            .map_err(backend)?
            .unwrap_or(false);
            if !group_exists {
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
            tx.commit().map_err(backend)?;
            Ok(Put { created, value })
        })
        .await
    }

    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
        let cluster = cluster.clone();
        self.read(move |conn| select_cluster(conn, &cluster))
    }

    async fn delete_cluster(&self, cluster: &ClusterRef) -> StoreResult<bool> {
        let cluster = cluster.clone();
        self.call(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM clusters WHERE subscription_id = ?1 AND group_key = ?2 AND name_key = ?3",
                    params![cluster.subscription.as_str(), cluster.group.key(), cluster.name.key()],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
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
            let sql = format!(
                "SELECT {CLUSTER_COLUMNS} FROM clusters c
                 WHERE c.subscription_id = ?1
                   AND (?2 IS NULL OR c.group_key = ?2)
                   AND (c.group_key, c.name_key) > (?3, ?4)
                 ORDER BY c.group_key, c.name_key
                 LIMIT ?5"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params![sub, group_key, after_group, after_name, limit as i64], cluster_from_row)
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(finish_cluster)).collect()
        })
    }

    async fn insert_command(&self, command: NewCommand) -> StoreResult<()> {
        self.call(move |conn| insert_command_row(conn, &command, CommandState::Accepted, None, command.pinned.as_ref()))
            .await
    }

    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        let lease = lease.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            insert_command_row(&tx, &command, CommandState::Running, Some(lease.now), Some(&lease))?;
            let (kubeconfig, document) = cluster_run_inputs(&tx, command.cluster_uid.as_str())?;
            tx.commit().map_err(backend)?;
            Ok(ClaimedCommand::submitted(command, kubeconfig, document.as_deref()))
        })
        .await
    }

    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>> {
        let (cluster_uid, id) = (cluster_uid.to_string(), id.to_string());
        self.read(move |conn| {
            let row = row(
                conn,
                &format!(
                    "SELECT {COMMAND_COLUMNS}
                     FROM commands WHERE id = ?1 AND cluster_uid = ?2 AND (expires_at IS NULL OR expires_at > ?3)"
                ),
                params![id, cluster_uid, now],
                |r| Ok(rows::command(r)),
            )
            .optional()
            .map_err(backend)?;
            row.transpose()
        })
    }

    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        let lease = lease.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let claimed = row(
                &tx,
                "UPDATE commands SET state = 'Running', started_at = ?1, owner = ?2, lease_until = ?3
                     WHERE seq = (SELECT seq FROM commands WHERE state = 'Accepted' AND (owner IS NULL OR owner = ?2)
                                  ORDER BY seq LIMIT 1)
                     RETURNING id, command, context, cluster_token, cluster_uid, submitted_by,
                               environment, secret_names, timeout_ms, saved_command",
                params![lease.now, lease.owner, lease.until],
                |r| {
                    Ok((
                        ClaimedCommand {
                            id: r.get(0)?,
                            command: r.get(1)?,
                            context: r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                            cluster_token: r.get(3)?,
                            kubeconfig: None,
                            settings: Ok(Default::default()),
                            submitted_by: r.get(5)?,
                            options: Default::default(),
                        },
                        r.get::<_, String>(4)?,
                        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
                    ))
                },
            )
            .optional()
            .map_err(backend)?;
            let Some((mut command, cluster_uid, (environment, secrets, timeout_ms, saved))) = claimed else {
                return Ok(None);
            };
            command.options = rows::options_from(environment, secrets, timeout_ms, saved)?;
            let (kubeconfig, document) = cluster_run_inputs(&tx, &cluster_uid)?;
            command.kubeconfig = kubeconfig;
            command.settings = super::settings_of(document.as_deref());
            tx.commit().map_err(backend)?;
            Ok(Some(command))
        })
        .await
    }

    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool> {
        debug_assert!(CommandState::Running.can_become(outcome.state()));
        let id = id.to_string();
        let (exit_code, logs, reason) = match outcome {
            Outcome::Exited { exit_code, logs } => (Some(*exit_code), logs.clone(), None),
            Outcome::Failed { reason, logs } => (None, logs.clone(), Some(reason.as_reason())),
        };
        let state = outcome.state().as_str();
        self.call(move |conn| {
            // The context and the cluster token are only needed to run: drop them with the run.
            let n = conn
                .execute(
                    "UPDATE commands SET state = ?2, finished_at = ?3, exit_code = ?4, logs = ?5, reason = ?6,
                            expires_at = ?7, context = NULL, cluster_token = NULL
                     WHERE id = ?1 AND state = 'Running'",
                    params![id, state, now, exit_code, logs, reason, expires_at],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64> {
        let reason = FailureReason::Interrupted.as_reason();
        let lost = FailureReason::SecretsLost.as_reason();
        let owner = owner.to_string();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE commands SET state = 'Failed', finished_at = ?1, reason = ?2, expires_at = ?3,
                            logs = COALESCE(logs, ''), context = NULL, cluster_token = NULL
                     WHERE state = 'Running' AND (owner = ?4 OR owner IS NULL)",
                    params![now, reason, expires_at, owner],
                )
                .map_err(backend)?;
            let pinned = tx
                .execute(
                    "UPDATE commands SET state = 'Failed', finished_at = ?1, reason = ?2, expires_at = ?3,
                            logs = '', context = NULL, cluster_token = NULL
                     WHERE state = 'Accepted' AND owner = ?4",
                    params![now, lost, expires_at, owner],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok((n + pinned) as u64)
        })
        .await
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>> {
        let owner = owner.to_string();
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE commands SET lease_until = ?2 WHERE state IN ('Accepted', 'Running') AND owner = ?1
                     RETURNING id, cancel_requested_by",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![owner, until], |r| Ok((r.get::<_, CommandId>(0)?, r.get::<_, Option<String>>(1)?)))
                .map_err(backend)?;
            let mut requests = Vec::new();
            for row in rows {
                if let (id, Some(by)) = row.map_err(backend)? {
                    requests.push(CancelRequest { id, by });
                }
            }
            Ok(requests)
        })
        .await
    }

    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let reason = FailureReason::WorkerLost.as_reason();
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE commands SET state = 'Failed', finished_at = ?1, reason = ?2, expires_at = ?3,
                            logs = COALESCE(logs, ''), context = NULL, cluster_token = NULL
                     WHERE (state = 'Running' OR (state = 'Accepted' AND owner IS NOT NULL)) AND lease_until < ?1
                     RETURNING id",
                )
                .map_err(backend)?;
            let rows = stmt.query_map(params![now, reason, expires_at], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool> {
        let (cluster_uid, id, by) = (cluster_uid.to_string(), id.to_string(), by.to_string());
        self.call(move |conn| {
            let n = conn
                .execute(
                    "UPDATE commands SET cancel_requested_by = COALESCE(cancel_requested_by, ?3)
                     WHERE id = ?1 AND cluster_uid = ?2 AND state = 'Running'",
                    params![id, cluster_uid, by],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached("DELETE FROM commands WHERE expires_at IS NOT NULL AND expires_at <= ?1 RETURNING id")
                .map_err(backend)?;
            let rows = stmt.query_map(params![now], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn cancel_queued(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Option<CommandState>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Canceled));
        let (cluster_uid, id) = (cluster_uid.to_string(), id.to_string());
        let reason = FailureReason::Canceled(by.to_string()).as_reason();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let state: Option<String> = row(&tx,
                    "SELECT state FROM commands WHERE id = ?1 AND cluster_uid = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                    params![id, cluster_uid, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(state) = state.as_deref().and_then(CommandState::parse) else {
                return Ok(None);
            };
            if state == CommandState::Accepted {
                tx.execute(
                    "UPDATE commands SET state = 'Canceled', finished_at = ?2, reason = ?3, logs = '', expires_at = ?4,
                            context = NULL, cluster_token = NULL
                     WHERE id = ?1 AND state = 'Accepted'",
                    params![id, now, reason, expires_at],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(state))
        })
        .await
    }

    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>> {
        let cluster_uid = cluster_uid.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, state, submitted_at, started_at, finished_at, exit_code, NULL, reason, expires_at, seq, command, submitted_by,
                            environment, secret_names, saved_command
                     FROM commands WHERE cluster_uid = ?1 AND seq < ?2 AND (expires_at IS NULL OR expires_at > ?3)
                     ORDER BY seq DESC LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![cluster_uid, before.unwrap_or(i64::MAX), now, limit as i64], |r| {
                    Ok((
                        rows::command(r),
                        r.get::<_, i64>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, String>(11)?,
                        (r.get(12)?, r.get(13)?, r.get(14)?),
                    ))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (record, seq, command, submitted_by, (environment, secrets, saved)) = row.map_err(backend)?;
                let options = rows::options_from(environment, secrets, None, saved)?;
                Ok(CommandSummary {
                    seq,
                    record: record?,
                    command,
                    submitted_by,
                    saved_command: options.saved_command,
                    parameters: options.environment,
                    secret_names: options.secret_names,
                })
            })
            .collect()
        })
    }

    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id FROM commands WHERE state = 'Running'").map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let name = name.to_string();
        self.call(move |conn| {
            conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)", params![name, candidate])
                .map_err(backend)?;
            row(conn, "SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0)).map_err(backend)
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_string();
        self.read(move |conn| {
            row(conn, "SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| row(conn, "SELECT 1", [], |_| Ok(())).map_err(backend))
    }

    fn is_shared(&self) -> bool {
        false
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

    async fn count_accepted(&self) -> StoreResult<usize> {
        self.read(|conn| {
            let n: i64 = row(conn, "SELECT COUNT(*) FROM commands WHERE state = 'Accepted'", [], |r| r.get(0))
                .map_err(backend)?;
            Ok(n as usize)
        })
    }
}

/// Ids are stored as their text.
macro_rules! text_column {
    ($($id:ty),*) => {$(
        impl rusqlite::ToSql for $id {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $id {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(<$id>::from_text)
            }
        }
    )*};
}
text_column!(crate::command::CommandId, super::ClusterUid);

impl Columns for Row<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i).map_err(backend)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.get(i).map_err(backend)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i).map_err(backend)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.get(i).map_err(backend)
    }
    fn opt_int32(&self, i: usize) -> Result<Option<i32>, StoreError> {
        self.get(i).map_err(backend)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.get(i).map_err(backend)
    }
}

fn assignment_row(r: &Row<'_>) -> rusqlite::Result<Result<RoleAssignmentRecord, StoreError>> {
    Ok(rows::assignment(r))
}

/// A row mapped into a record, where reading the row or building the record may fail.
pub(super) fn flatten<T>(mapped: rusqlite::Result<Result<T, StoreError>>) -> Result<T, StoreError> {
    mapped.map_err(backend)?
}
