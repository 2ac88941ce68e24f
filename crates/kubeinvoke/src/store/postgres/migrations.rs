//! PostgreSQL's schema, as ordered migrations; `kubeinvoke_schema` records which have run.
//! A migration, once released, never changes: a database that ran it would not run it again.

use anyhow::Context;
use deadpool_postgres::Object;

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
    crate::store::runs::POSTGRES_MIGRATION,
    crate::store::documents::POSTGRES_MIGRATION,
    r#"
ALTER TABLE commands ADD COLUMN environment TEXT;
ALTER TABLE commands ADD COLUMN secret_names TEXT;
ALTER TABLE commands ADD COLUMN timeout_ms BIGINT;
ALTER TABLE commands ADD COLUMN saved_command TEXT;
"#,
    crate::store::activity::POSTGRES_MIGRATION,
    crate::store::deliveries::POSTGRES_MIGRATION,
    crate::store::approvals::POSTGRES_MIGRATION,
    crate::store::commands::RUN_AS_MIGRATION,
    crate::store::clusters::POSTGRES_TAGS_MIGRATION,
];

/// Applies pending migrations under an advisory lock, so replicas starting together do not race.
pub(super) async fn migrate(client: &mut Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS kubeinvoke_schema (version INTEGER PRIMARY KEY)").await?;
    let applied: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) AS applied FROM kubeinvoke_schema", &[])
        .await?
        .try_get("applied")?;
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
