//! The scale-out backend: PostgreSQL through a deadpool of tokio-postgres connections, shared by
//! any number of replicas.
//!
//! Replicas agree through the database alone: claims take the oldest `Accepted` row with
//! `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same command; a claimed command
//! carries its owner's lease, which the owner renews and any replica may declare lost once it
//! runs out. Submissions `NOTIFY` a channel every replica `LISTEN`s on. All SQL takes input
//! through bound parameters only.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::rows::{self, ASSIGNMENT_COLUMNS, COMMAND_COLUMNS, Columns, PRINCIPAL_COLUMNS, json_map, json_text};
use super::*;
use crate::command::{CommandState, FailureReason};

/// The channel submissions are announced on.
pub(super) const WORK_CHANNEL: &str = "kubeinvoke_work";
/// Serialises migrations of replicas that start together (an arbitrary, fixed key).
const MIGRATION_LOCK: i64 = 0x6b75_6265_696e_766b;

/// Ordered schema migrations; `kubeinvoke_schema` records which have run. Key columns use the
/// "C" collation so listings sort byte-wise, as on SQLite, whatever the database's locale.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE resource_groups (
    subscription_id TEXT COLLATE "C" NOT NULL,
    name_key        TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    location        TEXT NOT NULL,
    tags            TEXT,
    PRIMARY KEY (subscription_id, name_key)
);
CREATE TABLE clusters (
    uid             TEXT PRIMARY KEY,
    subscription_id TEXT COLLATE "C" NOT NULL,
    group_key       TEXT COLLATE "C" NOT NULL,
    name_key        TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    document        TEXT NOT NULL,
    kubeconfig      BYTEA,
    UNIQUE (subscription_id, group_key, name_key),
    FOREIGN KEY (subscription_id, group_key)
        REFERENCES resource_groups (subscription_id, name_key) ON DELETE CASCADE
);
CREATE TABLE commands (
    seq                 BIGSERIAL PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    cluster_uid         TEXT NOT NULL REFERENCES clusters (uid) ON DELETE CASCADE,
    state               TEXT NOT NULL,
    command             TEXT NOT NULL,
    context             BYTEA,
    cluster_token       TEXT,
    submitted_at        BIGINT NOT NULL,
    submitted_by        TEXT NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    exit_code           INTEGER,
    logs                TEXT,
    reason              TEXT,
    expires_at          BIGINT,
    owner               TEXT,
    lease_until         BIGINT,
    cancel_requested_by TEXT
);
CREATE INDEX commands_accepted ON commands (seq) WHERE state = 'Accepted';
CREATE INDEX commands_running ON commands (owner, lease_until) WHERE state = 'Running';
CREATE INDEX commands_by_expiry ON commands (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX commands_by_cluster ON commands (cluster_uid, seq);
CREATE TABLE principals (
    app_id       TEXT PRIMARY KEY,
    object_id    TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    secret_salt  BYTEA NOT NULL,
    secret_hash  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TABLE role_assignments (
    name               TEXT PRIMARY KEY,
    scope              TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id       TEXT NOT NULL,
    principal_type     TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id);
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
"#,
    super::runs::POSTGRES_MIGRATION,
    super::documents::POSTGRES_MIGRATION,
    r#"
ALTER TABLE commands ADD COLUMN environment TEXT;
ALTER TABLE commands ADD COLUMN secret_names TEXT;
ALTER TABLE commands ADD COLUMN timeout_ms BIGINT;
ALTER TABLE commands ADD COLUMN saved_command TEXT;
"#,
    super::activity::POSTGRES_MIGRATION,
    super::deliveries::POSTGRES_MIGRATION,
];

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and applies pending
    /// migrations under an advisory lock, so replicas starting together do not race.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url).context("parsing the --store PostgreSQL URL")?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        if config.get_application_name().is_none() {
            config.application_name("kubeinvoke");
        }
        // A database that stalls must not stall requests: they fail with 503 instead.
        config.options("-c statement_timeout=15000");
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("building the PostgreSQL connection pool")?;
        let store = PostgresStore { pool, config };
        let mut client = store.pool.get().await.with_context(|| format!("connecting to {}", redact(url)))?;
        migrate(&mut client).await?;
        Ok(store)
    }

    pub(super) async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Keeps one connection listening for submissions; reconnects after a database restart and
    /// wakes the dispatcher then too, since announcements made meanwhile were lost.
    async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    backoff = Duration::from_millis(200);
                    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let listening = async {
                        if let Err(e) = client.batch_execute(&format!("LISTEN {WORK_CHANNEL}")).await {
                            tracing::warn!(error = %e, "LISTEN failed");
                        }
                        wake.notify_one();
                        std::future::pending::<()>().await
                    };
                    let forward = async {
                        use futures_util::StreamExt;
                        let mut messages = std::pin::pin!(messages);
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "the work-notification connection failed; reconnecting");
                                    return;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = listening => {}
                        _ = forward => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot listen for work yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

async fn migrate(client: &mut Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS kubeinvoke_schema (version INTEGER PRIMARY KEY)").await?;
    let applied: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM kubeinvoke_schema", &[]).await?.get(0);
    let applied = usize::try_from(applied).context("negative schema version")?;
    anyhow::ensure!(
        applied <= MIGRATIONS.len(),
        "the database has schema version {applied}, newer than this binary knows ({})",
        MIGRATIONS.len()
    );
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).await.with_context(|| format!("migration {}", index + 1))?;
        tx.execute("INSERT INTO kubeinvoke_schema (version) VALUES ($1)", &[&((index + 1) as i32)]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The URL without its password, for logs and the banner.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_string(),
        },
        None => "<unparsable URL>".into(),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(e),
        PoolError::Timeout(_) => StoreError::Unavailable(anyhow::anyhow!("no database connection within the timeout")),
        other => StoreError::Backend(other.into()),
    }
}

/// Connection trouble (refused, closed, shutting down, too many clients) is `Unavailable`:
/// the request may succeed later. Anything the database itself refused is a backend error.
pub(super) fn db_error(e: tokio_postgres::Error) -> StoreError {
    let transient = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "57014"
        }
        None => {
            let text = e.to_string();
            !(text.starts_with("error deserializing") || text.starts_with("error serializing"))
        }
    };
    if transient { StoreError::Unavailable(e.into()) } else { StoreError::Backend(e.into()) }
}

fn group_from_row(row: &Row) -> Result<GroupRecord, StoreError> {
    let tags: Option<String> = row.get(3);
    Ok(GroupRecord {
        subscription: row.get(0),
        name: row.get(1),
        location: row.get(2),
        tags: tags.as_deref().map(json_map).transpose()?,
    })
}

const CLUSTER_SELECT: &str = "SELECT c.uid, c.subscription_id, g.name, c.name, c.document, c.kubeconfig
     FROM clusters c JOIN resource_groups g ON g.subscription_id = c.subscription_id AND g.name_key = c.group_key";

fn cluster_from_row(row: &Row) -> Result<ClusterRecord, StoreError> {
    let document: String = row.get(4);
    Ok(ClusterRecord {
        uid: row.get(0),
        subscription: row.get(1),
        group: row.get(2),
        name: row.get(3),
        document: Arc::new(json_map(&document)?),
        kubeconfig: row.get::<_, Option<Vec<u8>>>(5).map(Arc::new),
    })
}

/// The assignment `sql` (bound to the lower-cased `name`) returns, if any.
async fn assignment_named(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    name: &str,
) -> StoreResult<Option<RoleAssignmentRecord>> {
    let row = client.query_opt(sql, &[&name.to_lowercase()]).await.map_err(db_error)?;
    row.as_ref().map(rows::assignment).transpose()
}

async fn select_cluster(
    client: &impl deadpool_postgres::GenericClient,
    c: &ClusterRef,
) -> StoreResult<Option<ClusterRecord>> {
    let sql = format!("{CLUSTER_SELECT} WHERE c.subscription_id = $1 AND c.group_key = $2 AND c.name_key = $3");
    let row =
        client.query_opt(&sql, &[&c.subscription.as_str(), &c.group.key(), &c.name.key()]).await.map_err(db_error)?;
    row.as_ref().map(cluster_from_row).transpose()
}

/// Columns a finished command clears: the context and the cluster token are only needed to run.
const DROP_RUN_INPUTS: &str = "context = NULL, cluster_token = NULL";

/// A new command's row: `$3` its state, `$13`/`$14` the owner and lease, `$15` when it started.
const INSERT_COMMAND: &str =
    "INSERT INTO commands (id, cluster_uid, state, command, context, cluster_token, submitted_at,
                                  submitted_by, environment, secret_names, timeout_ms, saved_command, owner,
                                  lease_until, started_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

impl PostgresStore {
    /// Runs `sql`, which wraps [`INSERT_COMMAND`], with the row's fifteen parameters, then `extra`.
    async fn insert_with(
        &self,
        sql: &str,
        command: &NewCommand,
        state: CommandState,
        owner: Option<&Lease>,
        started_at: Option<i64>,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let (environment, secrets, timeout_ms) = rows::option_columns(&command.options);
        let (owner, lease_until) = owner.map(|l| (&l.owner, l.until)).unzip();
        let state = state.as_str();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &command.id,
            &command.cluster_uid,
            &state,
            &command.command,
            &command.context,
            &command.cluster_token,
            &command.submitted_at,
            &command.submitted_by,
            &environment,
            &secrets,
            &timeout_ms,
            &command.options.saved_command,
            &owner,
            &lease_until,
            &started_at,
        ];
        params.extend_from_slice(extra);
        client.query(sql, &params).await.map_err(db_error)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO principals ({PRINCIPAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&p.app_id, &p.object_id, &p.display_name, &p.secret_salt, &p.secret_hash, &p.created_at],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE app_id = $1");
        let row = client.query_opt(&sql, &[&app_id.to_lowercase()]).await.map_err(db_error)?;
        row.as_ref().map(rows::principal).transpose()
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY created_at, app_id");
        Ok(client.query(&sql, &[]).await.map_err(db_error)?.iter().map(rows::principal).collect::<StoreResult<_>>()?)
    }

    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let app_id = app_id.to_lowercase();
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(
            "DELETE FROM role_assignments WHERE principal_id IN (SELECT object_id FROM principals WHERE app_id = $1)",
            &[&app_id],
        )
        .await
        .map_err(db_error)?;
        let n = tx.execute("DELETE FROM principals WHERE app_id = $1", &[&app_id]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(n > 0)
    }

    async fn put_role_assignment(&self, a: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let n = client
            .execute(
                &format!(
                    "INSERT INTO role_assignments ({ASSIGNMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (name) DO NOTHING"
                ),
                &[&a.name, &a.scope, &a.role_definition_id, &a.principal_id, &a.principal_type, &a.created_at],
            )
            .await
            .map_err(db_error)?;
        let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE name = $1");
        let stored = client.query_one(&sql, &[&a.name]).await.map_err(db_error)?;
        Ok(Put { created: n > 0, value: rows::assignment(&stored)? })
    }

    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE name = $1");
        assignment_named(&client, &sql, name).await
    }

    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let sql = format!("DELETE FROM role_assignments WHERE name = $1 RETURNING {ASSIGNMENT_COLUMNS}");
        assignment_named(&client, &sql, name).await
    }

    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments ORDER BY created_at, name");
        Ok(client.query(&sql, &[]).await.map_err(db_error)?.iter().map(rows::assignment).collect::<StoreResult<_>>()?)
    }

    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE principal_id = $1 ORDER BY created_at, name"
        );
        let rows = client.query(&sql, &[&principal_id.to_lowercase()]).await.map_err(db_error)?;
        Ok(rows.iter().map(rows::assignment).collect::<StoreResult<Vec<_>>>()?.into())
    }

    async fn put_group(&self, group: GroupRecord) -> StoreResult<Put<GroupRecord>> {
        let client = self.client().await?;
        let tags = group.tags.as_ref().map(json_text);
        // `xmax = 0` only for a row this statement inserted; an update keeps the stored casing.
        let row = client
            .query_one(
                "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (subscription_id, name_key) DO UPDATE SET location = EXCLUDED.location, tags = EXCLUDED.tags
                 RETURNING name, (xmax = 0)",
                &[&group.subscription, &group.name.to_lowercase(), &group.name, &group.location, &tags],
            )
            .await
            .map_err(db_error)?;
        Ok(Put { created: row.get(1), value: GroupRecord { name: row.get(0), ..group } })
    }

    async fn get_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<Option<GroupRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT subscription_id, name, location, tags FROM resource_groups
                 WHERE subscription_id = $1 AND name_key = $2",
                &[&subscription.as_str(), &group.key()],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn delete_group(&self, subscription: &SubscriptionId, group: &GroupName) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM resource_groups WHERE subscription_id = $1 AND name_key = $2",
                &[&subscription.as_str(), &group.key()],
            )
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn list_groups(&self, subscription: &SubscriptionId) -> StoreResult<Vec<GroupRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT subscription_id, name, location, tags FROM resource_groups
                 WHERE subscription_id = $1 ORDER BY name_key",
                &[&subscription.as_str()],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(group_from_row).collect()
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT DISTINCT subscription_id FROM resource_groups ORDER BY subscription_id", &[])
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn put_cluster(&self, write: ClusterWrite) -> StoreResult<Put<ClusterRecord>> {
        let mut client = self.client().await?;
        let c = &write.cluster;
        let tx = client.transaction().await.map_err(db_error)?;
        let upsert = tx
            .query_one(
                "INSERT INTO clusters (uid, subscription_id, group_key, name_key, name, document, kubeconfig)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (subscription_id, group_key, name_key) DO UPDATE
                   SET document = EXCLUDED.document, kubeconfig = COALESCE(EXCLUDED.kubeconfig, clusters.kubeconfig)
                 RETURNING (xmax = 0)",
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
        let created: bool = match upsert {
            Ok(row) => row.get(0),
            Err(e) if e.as_db_error().is_some_and(|db| db.code().code() == "23503") => {
                return Err(StoreError::GroupNotFound);
            }
            Err(e) => return Err(db_error(e)),
        };
        let value = select_cluster(&tx, c)
            .await?
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("cluster vanished inside its own transaction")))?;
        tx.commit().await.map_err(db_error)?;
        Ok(Put { created, value })
    }

    async fn get_cluster(&self, cluster: &ClusterRef) -> StoreResult<Option<ClusterRecord>> {
        let client = self.client().await?;
        select_cluster(&client, cluster).await
    }

    async fn delete_cluster(&self, c: &ClusterRef) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM clusters WHERE subscription_id = $1 AND group_key = $2 AND name_key = $3",
                &[&c.subscription.as_str(), &c.group.key(), &c.name.key()],
            )
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
        let sql = format!(
            "{CLUSTER_SELECT}
             WHERE c.subscription_id = $1
               AND ($2::text IS NULL OR c.group_key = $2)
               AND (c.group_key, c.name_key) > ($3, $4)
             ORDER BY c.group_key, c.name_key
             LIMIT $5"
        );
        let rows = client
            .query(&sql, &[&subscription.as_str(), &group_key, &after_group, &after_name, &(limit as i64)])
            .await
            .map_err(db_error)?;
        rows.iter().map(cluster_from_row).collect()
    }

    async fn insert_command(&self, command: NewCommand) -> StoreResult<()> {
        // One statement: the row and its announcement commit together.
        let sql = format!("WITH inserted AS ({INSERT_COMMAND} RETURNING id) SELECT pg_notify($16, id) FROM inserted");
        let pinned = command.pinned.as_ref();
        self.insert_with(&sql, &command, CommandState::Accepted, pinned, None, &[&WORK_CHANNEL]).await?;
        Ok(())
    }

    async fn insert_running(&self, command: NewCommand, lease: &Lease) -> StoreResult<ClaimedCommand> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        // One statement: the row and what running it needs from its cluster, atomically. No
        // announcement: it is nobody else's to claim.
        let sql = format!(
            "WITH inserted AS ({INSERT_COMMAND} RETURNING cluster_uid)
             SELECT c.kubeconfig, c.document FROM inserted LEFT JOIN clusters c ON c.uid = inserted.cluster_uid"
        );
        let rows = self.insert_with(&sql, &command, CommandState::Running, Some(lease), Some(lease.now), &[]).await?;
        let row =
            rows.first().ok_or_else(|| StoreError::Backend(anyhow::anyhow!("the inserted command is missing")))?;
        let document: Option<String> = row.get(1);
        Ok(ClaimedCommand::submitted(command, row.get(0), document.as_deref()))
    }

    async fn get_command(
        &self,
        cluster_uid: &ClusterUid,
        id: &CommandId,
        now: i64,
    ) -> StoreResult<Option<CommandRecord>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
             WHERE id = $1 AND cluster_uid = $2 AND (expires_at IS NULL OR expires_at > $3)"
        );
        let row = client.query_opt(&sql, &[&id, &cluster_uid, &now]).await.map_err(db_error)?;
        row.as_ref().map(rows::command).transpose()
    }

    async fn claim_next(&self, lease: &Lease) -> StoreResult<Option<ClaimedCommand>> {
        debug_assert!(CommandState::Accepted.can_become(CommandState::Running));
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH next AS (
                   SELECT seq FROM commands WHERE state = 'Accepted' AND (owner IS NULL OR owner = $2)
                   ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 UPDATE commands c SET state = 'Running', started_at = $1, owner = $2, lease_until = $3
                 FROM next WHERE c.seq = next.seq AND c.state = 'Accepted'
                 RETURNING c.id, c.command, c.context, c.cluster_token, c.submitted_by,
                   (SELECT kubeconfig FROM clusters WHERE uid = c.cluster_uid),
                   (SELECT document FROM clusters WHERE uid = c.cluster_uid),
                   c.environment, c.secret_names, c.timeout_ms, c.saved_command",
                &[&lease.now, &lease.owner, &lease.until],
            )
            .await
            .map_err(db_error)?;
        row.map(|r| {
            let document: Option<String> = r.get(6);
            let settings = super::settings_of(document.as_deref());
            Ok(ClaimedCommand {
                id: r.get(0),
                command: r.get(1),
                context: r.get::<_, Option<Vec<u8>>>(2).unwrap_or_default(),
                cluster_token: r.get(3),
                submitted_by: r.get(4),
                kubeconfig: r.get(5),
                settings,
                options: rows::options_from(r.get(7), r.get(8), r.get(9), r.get(10))?,
            })
        })
        .transpose()
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> StoreResult<Vec<CancelRequest>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE commands SET lease_until = $2 WHERE state IN ('Accepted', 'Running') AND owner = $1
                 RETURNING id, cancel_requested_by",
                &[&owner, &until],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(1).map(|by| CancelRequest { id: r.get(0), by }))
            .collect())
    }

    async fn end_lost(&self, now: i64, expires_at: i64) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3,
                    logs = COALESCE(logs, ''), {DROP_RUN_INPUTS}
             WHERE (state = 'Running' OR (state = 'Accepted' AND owner IS NOT NULL)) AND lease_until < $1
             RETURNING id"
        );
        let reason = FailureReason::WorkerLost.as_reason();
        let rows = client.query(&sql, &[&now, &reason, &expires_at]).await.map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn request_cancel(&self, cluster_uid: &ClusterUid, id: &CommandId, by: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE commands SET cancel_requested_by = COALESCE(cancel_requested_by, $3)
                 WHERE id = $1 AND cluster_uid = $2 AND state = 'Running'",
                &[&id, &cluster_uid, &by],
            )
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn finish_command(&self, id: &CommandId, outcome: &Outcome, now: i64, expires_at: i64) -> StoreResult<bool> {
        debug_assert!(CommandState::Running.can_become(outcome.state()));
        let (exit_code, logs, reason) = match outcome {
            Outcome::Exited { exit_code, logs } => (Some(*exit_code), logs.clone(), None),
            Outcome::Failed { reason, logs } => (None, logs.clone(), Some(reason.as_reason())),
        };
        let client = self.client().await?;
        let sql = format!(
            "UPDATE commands SET state = $2, finished_at = $3, exit_code = $4, logs = $5, reason = $6,
                    expires_at = $7, {DROP_RUN_INPUTS}
             WHERE id = $1 AND state = 'Running'"
        );
        let n = client
            .execute(&sql, &[&id, &outcome.state().as_str(), &now, &exit_code, &logs, &reason, &expires_at])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Locks the row: a claim cannot take it between the check and the update.
        let state: Option<String> = tx
            .query_opt(
                "SELECT state FROM commands
                 WHERE id = $1 AND cluster_uid = $2 AND (expires_at IS NULL OR expires_at > $3) FOR UPDATE",
                &[&id, &cluster_uid, &now],
            )
            .await
            .map_err(db_error)?
            .map(|r| r.get(0));
        let Some(state) = state.as_deref().and_then(CommandState::parse) else {
            return Ok(None);
        };
        if state == CommandState::Accepted {
            let sql = format!(
                "UPDATE commands SET state = 'Canceled', finished_at = $2, reason = $3, logs = '', expires_at = $4,
                        {DROP_RUN_INPUTS}
                 WHERE id = $1 AND state = 'Accepted'"
            );
            let reason = FailureReason::Canceled(by.to_string()).as_reason();
            tx.execute(&sql, &[&id, &now, &reason, &expires_at]).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(state))
    }

    async fn list_commands(
        &self,
        cluster_uid: &ClusterUid,
        before: Option<i64>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<CommandSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, state, submitted_at, started_at, finished_at, exit_code, NULL::text, reason, expires_at,
                        seq, command, submitted_by, environment, secret_names, saved_command
                 FROM commands WHERE cluster_uid = $1 AND seq < $2 AND (expires_at IS NULL OR expires_at > $3)
                 ORDER BY seq DESC LIMIT $4",
                &[&cluster_uid, &before.unwrap_or(i64::MAX), &now, &(limit as i64)],
            )
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let options = rows::options_from(r.get(12), r.get(13), None, r.get(14))?;
                Ok(CommandSummary {
                    record: rows::command(r)?,
                    seq: r.get(9),
                    command: r.get(10),
                    submitted_by: r.get(11),
                    saved_command: options.saved_command,
                    parameters: options.environment,
                    secret_names: options.secret_names,
                })
            })
            .collect()
    }

    async fn interrupt_running(&self, owner: &str, now: i64, expires_at: i64) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let sql = format!(
            "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3,
                    logs = COALESCE(logs, ''), {DROP_RUN_INPUTS}
             WHERE state = 'Running' AND (owner = $4 OR owner IS NULL)"
        );
        let reason = FailureReason::Interrupted.as_reason();
        let interrupted = tx.execute(&sql, &[&now, &reason, &expires_at, &owner]).await.map_err(db_error)?;
        let pinned = format!(
            "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3, logs = '',
                    {DROP_RUN_INPUTS}
             WHERE state = 'Accepted' AND owner = $4"
        );
        let lost = FailureReason::SecretsLost.as_reason();
        let lost = tx.execute(&pinned, &[&now, &lost, &expires_at, &owner]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(interrupted + lost)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        let rows = client
            .query("DELETE FROM commands WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING id", &[&now])
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn count_accepted(&self) -> StoreResult<usize> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one("SELECT COUNT(*) FROM commands WHERE state = 'Accepted'", &[])
            .await
            .map_err(db_error)?
            .get(0);
        Ok(n as usize)
    }

    async fn running_command_ids(&self) -> StoreResult<Vec<CommandId>> {
        let client = self.client().await?;
        let rows = client.query("SELECT id FROM commands WHERE state = 'Running'", &[]).await.map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )
            .await
            .map_err(db_error)?;
        Ok(client.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(db_error)?.get(0))
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(db_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
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

    fn notify_new_work(&self, wake: Arc<Notify>) {
        tokio::spawn(Self::listen(self.config.clone(), wake));
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(redact("postgres://ki:s3cret@db:5432/ki"), "postgres://ki@db:5432/ki");
        assert_eq!(redact("postgres://ki@db/ki"), "postgres://ki@db/ki");
        assert_eq!(redact("postgres://db/ki"), "postgres://db/ki");
        assert_eq!(redact("p@ss"), "<unparsable URL>");
    }
}

/// Ids are stored as their text.
macro_rules! text_column {
    ($($id:ty),*) => {$(
        impl tokio_postgres::types::ToSql for $id {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $id {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                String::from_sql(ty, raw).map(<$id>::from_text)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <String as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    )*};
}
text_column!(crate::command::CommandId, super::ClusterUid);

impl Columns for Row {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.try_get(i).map_err(db_error)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(db_error)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get(i).map_err(db_error)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i).map_err(db_error)
    }
    fn opt_int32(&self, i: usize) -> Result<Option<i32>, StoreError> {
        self.try_get(i).map_err(db_error)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.try_get(i).map_err(db_error)
    }
}
