//! SQLite's schema, as ordered migrations; `PRAGMA user_version` records how many have run.
//! A migration, once released, never changes: a database that ran it would not run it again.

use anyhow::Context;
use rusqlite::Connection;

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
    crate::store::runs::SQLITE_MIGRATION,
    crate::store::documents::SQLITE_MIGRATION,
    r#"
ALTER TABLE commands ADD COLUMN environment TEXT;
ALTER TABLE commands ADD COLUMN secret_names TEXT;
ALTER TABLE commands ADD COLUMN timeout_ms INTEGER;
ALTER TABLE commands ADD COLUMN saved_command TEXT;
"#,
    crate::store::activity::SQLITE_MIGRATION,
    crate::store::deliveries::SQLITE_MIGRATION,
    crate::store::approvals::SQLITE_MIGRATION,
    crate::store::commands::RUN_AS_MIGRATION,
    crate::store::clusters::SQLITE_TAGS_MIGRATION,
];

/// Applies the migrations `conn`'s database has not run yet, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get("user_version"))?;
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
