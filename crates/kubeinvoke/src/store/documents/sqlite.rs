//! [`DocumentStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{COLUMNS, DocumentKind, DocumentRecord, DocumentStore, key};
use crate::store::rows::json_text;
use crate::store::sqlite::{SqliteStore, backend, flatten};
use crate::store::{Put, StoreResult};

pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE arm_documents (
    kind       TEXT NOT NULL,
    scope_key  TEXT NOT NULL,
    name_key   TEXT NOT NULL,
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, scope_key, name_key)
);
"#;

fn select(
    conn: &rusqlite::Connection,
    kind: &str,
    scope_key: &str,
    name_key: &str,
) -> StoreResult<Option<DocumentRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM arm_documents WHERE kind = ?1 AND scope_key = ?2 AND name_key = ?3"
    ))
    .map_err(backend)?
    .query_row(params![kind, scope_key, name_key], |r| Ok(super::document(r)))
    .optional()
    .map_err(backend)?
    .transpose()
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn put_document(&self, record: DocumentRecord) -> StoreResult<Put<DocumentRecord>> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let (scope_key, name_key) = record.keys();
            let existing = select(&tx, record.kind.as_str(), &scope_key, &name_key)?;
            let stored = match &existing {
                Some(old) => DocumentRecord {
                    scope: old.scope.clone(),
                    name: old.name.clone(),
                    created_at: old.created_at,
                    ..record
                },
                None => record,
            };
            tx.execute(
                super::UPSERT_DOCUMENT.sqlite(),
                params![
                    stored.kind.as_str(),
                    scope_key,
                    name_key,
                    stored.scope,
                    stored.name,
                    json_text(&stored.document),
                    stored.created_at,
                    stored.updated_at
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Put { created: existing.is_none(), value: stored })
        })
        .await
    }

    async fn get_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<Option<DocumentRecord>> {
        let (scope_key, name_key) = (key(scope), key(name));
        self.read(move |conn| select(conn, kind.as_str(), &scope_key, &name_key))
    }

    async fn delete_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<bool> {
        let (scope_key, name_key) = (key(scope), key(name));
        self.call(move |conn| {
            let n = conn
                .execute(super::DELETE_DOCUMENT.sqlite(), params![kind.as_str(), scope_key, name_key])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_documents(&self, kind: DocumentKind, scope: Option<&str>) -> StoreResult<Vec<DocumentRecord>> {
        let scope_key = scope.map(key);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM arm_documents WHERE kind = ?1 AND (?2 IS NULL OR scope_key = ?2)
                     ORDER BY scope_key, name_key"
                ))
                .map_err(backend)?;
            let rows =
                stmt.query_map(params![kind.as_str(), scope_key], |r| Ok(super::document(r))).map_err(backend)?;
            rows.map(flatten).collect()
        })
    }
}
