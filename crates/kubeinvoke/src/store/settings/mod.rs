//! Named values every replica agrees on (the token signing key, the bootstrap admin): the first
//! write wins and is what every later reader gets.

mod postgres;
mod sqlite;

use async_trait::async_trait;

use super::StoreResult;
use super::sql::Sql;

#[async_trait]
pub trait SettingStore: Send + Sync {
    /// Stores `candidate` under `name` unless a value is there already; returns the stored
    /// value. How replicas agree on one signing key and one bootstrap admin.
    async fn init_setting(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>>;
    async fn get_setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
}

static INSERT_IF_ABSENT: Sql =
    Sql::new("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING");
static VALUE: Sql = Sql::new("SELECT value FROM settings WHERE name = $1");
