//! ARM resources kept as JSON documents under a scope: saved commands and custom role
//! definitions. One table, keyed by kind, scope and name (both compared without case, as ARM does).

mod postgres;
mod sqlite;

use crate::store::sql::Sql;
use async_trait::async_trait;
use serde_json::{Map, Value};

use super::rows::{Columns, json_map};
use super::{Put, StoreError, StoreResult};

pub(super) use postgres::MIGRATION as POSTGRES_MIGRATION;
pub(super) use sqlite::MIGRATION as SQLITE_MIGRATION;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `…/providers/Microsoft.ContainerService/savedCommands/{name}`.
    SavedCommand,
    /// `…/providers/Microsoft.Authorization/roleDefinitions/{guid}`: kept under the root scope,
    /// since role definition ids are unique across scopes.
    RoleDefinition,
    /// `…/providers/Microsoft.EventGrid/eventSubscriptions/{name}`.
    EventSubscription,
    /// `…/managedClusters/{name}/runCommands/{name}`: a run command as a resource, under its
    /// cluster's id.
    RunCommand,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::SavedCommand => "savedCommand",
            DocumentKind::RoleDefinition => "roleDefinition",
            DocumentKind::EventSubscription => "eventSubscription",
            DocumentKind::RunCommand => "runCommand",
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRecord {
    pub kind: DocumentKind,
    /// The scope's ARM id as first written (`/` for role definitions).
    pub scope: String,
    /// The name as first written.
    pub name: String,
    pub document: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DocumentRecord {
    fn keys(&self) -> (String, String) {
        (key(&self.scope), key(&self.name))
    }
}

/// How scopes and names are compared.
pub(super) fn key(text: &str) -> String {
    text.trim_end_matches('/').to_lowercase()
}

#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Creates or replaces; a replaced document keeps its first spelling and creation time.
    async fn put_document(&self, record: DocumentRecord) -> StoreResult<Put<DocumentRecord>>;
    async fn get_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<Option<DocumentRecord>>;
    async fn delete_document(&self, kind: DocumentKind, scope: &str, name: &str) -> StoreResult<bool>;
    /// A kind's documents at one scope (or at every scope), ordered by scope then name.
    async fn list_documents(&self, kind: DocumentKind, scope: Option<&str>) -> StoreResult<Vec<DocumentRecord>>;
}

const COLUMNS: &str = "kind, scope, name, document, created_at, updated_at";

fn document(r: &impl Columns) -> Result<DocumentRecord, StoreError> {
    let kind = r.text("kind")?;
    let kind = [
        DocumentKind::SavedCommand,
        DocumentKind::RoleDefinition,
        DocumentKind::EventSubscription,
        DocumentKind::RunCommand,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind)
    .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("unknown stored document kind {kind:?}")))?;
    Ok(DocumentRecord {
        kind,
        scope: r.text("scope")?,
        name: r.text("name")?,
        document: json_map(&r.text("document")?)?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

// The statements both dialects share (PostgreSQL's `$n`; SQLite reads them as `?n`).

static UPSERT_DOCUMENT: Sql = Sql::new(
    "INSERT INTO arm_documents (kind, scope_key, name_key, scope, name, document, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (kind, scope_key, name_key) DO UPDATE SET document = $6, updated_at = $8",
);
static DELETE_DOCUMENT: Sql =
    Sql::new("DELETE FROM arm_documents WHERE kind = $1 AND scope_key = $2 AND name_key = $3");
