//! [`SettingStore`] on PostgreSQL.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::*;
use crate::store::postgres::{PostgresStore, db_error};
use crate::store::rows::Columns;

#[async_trait]
impl SettingStore for PostgresStore {
    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let client = self.client().await?;
        client.execute_cached(INSERT_IF_ABSENT.postgres(), &[&name, &candidate]).await.map_err(db_error)?;
        client.query_one_cached(VALUE.postgres(), &[&name]).await.map_err(db_error)?.bytes("value")
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(VALUE.postgres(), &[&name]).await.map_err(db_error)?;
        row.map(|r| r.bytes("value")).transpose()
    }
}
