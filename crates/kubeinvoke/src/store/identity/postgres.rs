//! [`IdentityStore`] on PostgreSQL.

use crate::store::postgres::CachedQueries;
use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::store::postgres::{PostgresStore, db_error, records};

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn create_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute_cached(
                INSERT_PRINCIPAL.postgres(),
                &[&p.app_id, &p.object_id, &p.display_name, &p.secret_salt, &p.secret_hash, &p.created_at],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt_cached(PRINCIPAL_BY_APP_ID.postgres(), &[&app_id.to_lowercase()])
            .await
            .map_err(db_error)?;
        row.as_ref().map(principal).transpose()
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        let client = self.client().await?;
        records(&client.query_cached(PRINCIPALS.postgres(), &[]).await.map_err(db_error)?, principal)
    }

    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let app_id = app_id.to_lowercase();
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute_cached(DELETE_PRINCIPALS_ASSIGNMENTS.postgres(), &[&app_id]).await.map_err(db_error)?;
        let n = tx.execute_cached(DELETE_PRINCIPAL.postgres(), &[&app_id]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(n > 0)
    }

    async fn put_role_assignment(&self, a: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let n = client
            .execute_cached(
                INSERT_ASSIGNMENT.postgres(),
                &[&a.name, &a.scope, &a.role_definition_id, &a.principal_id, &a.principal_type, &a.created_at],
            )
            .await
            .map_err(db_error)?;
        let stored = client.query_one_cached(ASSIGNMENT_NAMED.postgres(), &[&a.name]).await.map_err(db_error)?;
        Ok(Put { created: n > 0, value: assignment(&stored)? })
    }

    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let row =
            client.query_opt_cached(ASSIGNMENT_NAMED.postgres(), &[&name.to_lowercase()]).await.map_err(db_error)?;
        row.as_ref().map(assignment).transpose()
    }

    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>> {
        let client = self.client().await?;
        let row =
            client.query_opt_cached(DELETE_ASSIGNMENT.postgres(), &[&name.to_lowercase()]).await.map_err(db_error)?;
        row.as_ref().map(assignment).transpose()
    }

    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>> {
        let client = self.client().await?;
        records(&client.query_cached(ASSIGNMENTS.postgres(), &[]).await.map_err(db_error)?, assignment)
            .map(in_creation_order)
    }

    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>> {
        let client = self.client().await?;
        let rows =
            client.query_cached(ASSIGNMENTS_OF.postgres(), &[&principal_id.to_lowercase()]).await.map_err(db_error)?;
        Ok(in_creation_order(records(&rows, assignment)?).into())
    }
}
