//! [`DocumentStore`] on PostgreSQL.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::{COLUMNS, DocumentKind, DocumentRecord, DocumentStore, key};
use crate::store::postgres::{PostgresStore, db_error};
use crate::store::rows::json_text;
use crate::store::{Put, StoreResult};

pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE arm_documents (
    kind       TEXT NOT NULL,
    scope_key  TEXT COLLATE "C" NOT NULL,
    name_key   TEXT COLLATE "C" NOT NULL,
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, scope_key, name_key)
);
"#;

async fn select(
    client: &(impl CachedQueries + Sync),
    kind: &str,
    scope_key: &str,
    name_key: &str,
    lock: bool,
) -> StoreResult<Option<DocumentRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM arm_documents WHERE kind = $1 AND scope_key = $2 AND name_key = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client.query_opt_cached(&sql, &[&kind, &scope_key, &name_key]).await.map_err(db_error)?;
    row.as_ref().map(super::document).transpose()
}

#[async_trait]
impl DocumentStore for PostgresStore {
    async fn put_document(&self, record: DocumentRecord) -> StoreResult<Put<DocumentRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let (scope_key, name_key) = record.keys();
        let existing = select(&tx, record.kind.as_str(), &scope_key, &name_key, true).await?;
        let stored = match &existing {
            Some(old) => DocumentRecord {
                scope: old.scope.clone(),
                name: old.name.clone(),
                created_at: old.created_at,
                ..record
            },
            None => record,
        };
        tx.execute_cached(
            super::UPSERT_DOCUMENT.postgres(),
            &[
                &stored.kind.as_str(),
                &scope_key,
                &name_key,
                &stored.scope,
                &stored.name,
                &json_text(&stored.document),
                &stored.created_at,
                &stored.updated_at,
            ],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Put { created: existing.is_none(), value: stored })
    }

    async fn get_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<Option<DocumentRecord>> {
        let client = self.client().await?;
        select(&client, kind.as_str(), &key(scope), &key(name), false).await
    }

    async fn delete_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute_cached(super::DELETE_DOCUMENT.postgres(), &[&kind.as_str(), &key(scope), &key(name)])
            .await
            .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn list_documents(&self, kind: DocumentKind, scope: Option<&str>) -> StoreResult<Vec<DocumentRecord>> {
        let client = self.client().await?;
        let scope_key = scope.map(key);
        let rows = client
            .query_cached(
                &format!(
                    "SELECT {COLUMNS} FROM arm_documents WHERE kind = $1 AND ($2::TEXT IS NULL OR scope_key = $2)
                     ORDER BY scope_key, name_key"
                ),
                &[&kind.as_str(), &scope_key],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(super::document).collect()
    }
}
