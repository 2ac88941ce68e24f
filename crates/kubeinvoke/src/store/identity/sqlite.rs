//! [`IdentityStore`] on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::params;

use super::*;
use crate::store::sqlite::{SqliteStore, backend, optional_record, records};

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn create_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        self.call(move |conn| {
            conn.prepare_cached(INSERT_PRINCIPAL.sqlite())
                .and_then(|mut insert| {
                    insert.execute(params![
                        p.app_id,
                        p.object_id,
                        p.display_name,
                        p.secret_salt,
                        p.secret_hash,
                        p.created_at
                    ])
                })
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>> {
        let app_id = app_id.to_lowercase();
        self.read(move |conn| optional_record(conn, PRINCIPAL_BY_APP_ID.sqlite(), params![app_id], |r| principal(r)))
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        self.read(|conn| records(conn, PRINCIPALS.sqlite(), [], |r| principal(r)))
    }

    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool> {
        let app_id = app_id.to_lowercase();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute(DELETE_PRINCIPALS_ASSIGNMENTS.sqlite(), params![app_id]).map_err(backend)?;
            let n = tx.execute(DELETE_PRINCIPAL.sqlite(), params![app_id]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_role_assignment(&self, a: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>> {
        self.call(move |conn| {
            let n = conn
                .execute(
                    INSERT_ASSIGNMENT.sqlite(),
                    params![a.name, a.scope, a.role_definition_id, a.principal_id, a.principal_type, a.created_at],
                )
                .map_err(backend)?;
            let stored = optional_record(conn, ASSIGNMENT_NAMED.sqlite(), params![a.name], |r| assignment(r))?
                .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("role assignment vanished")))?;
            Ok(Put { created: n > 0, value: stored })
        })
        .await
    }

    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let name = name.to_lowercase();
        self.read(move |conn| optional_record(conn, ASSIGNMENT_NAMED.sqlite(), params![name], |r| assignment(r)))
    }

    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let name = name.to_lowercase();
        self.call(move |conn| optional_record(conn, DELETE_ASSIGNMENT.sqlite(), params![name], |r| assignment(r))).await
    }

    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>> {
        self.read(|conn| records(conn, ASSIGNMENTS.sqlite(), [], |r| assignment(r))).map(in_creation_order)
    }

    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>> {
        let principal_id = principal_id.to_lowercase();
        self.read(move |conn| records(conn, ASSIGNMENTS_OF.sqlite(), params![principal_id], |r| assignment(r)))
            .map(|found| in_creation_order(found).into())
    }
}
