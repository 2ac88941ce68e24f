//! [`SettingStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::*;
use crate::store::rows::Columns;
use crate::store::sqlite::{SqliteStore, backend, optional_record};

#[async_trait]
impl SettingStore for SqliteStore {
    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let name = name.to_string();
        self.call(move |conn| {
            conn.execute(INSERT_IF_ABSENT.sqlite(), params![name, candidate]).map_err(backend)?;
            optional_record(conn, VALUE.sqlite(), params![name], |r| r.bytes("value"))?.ok_or_else(|| {
                crate::store::StoreError::Backend(anyhow::anyhow!("the setting {name} vanished after its write"))
            })
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_string();
        self.read(move |conn| optional_record(conn, VALUE.sqlite(), params![name], |r| r.bytes("value")))
    }
}
