//! [`DeliveryStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{COLUMNS, DeliveryState, DeliveryStore};
use crate::store::sqlite::{SqliteStore, backend, flatten};
use crate::store::{Lease, StoreResult};

pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE event_deliveries (
    subscription_key TEXT PRIMARY KEY,
    cursor_seq       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    delivered        INTEGER NOT NULL DEFAULT 0,
    dead_lettered    INTEGER NOT NULL DEFAULT 0,
    last_dead_event  TEXT,
    last_error       TEXT,
    owner            TEXT,
    lease_until      INTEGER
);
"#;

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn init_delivery(&self, key: &str, cursor: i64) -> StoreResult<()> {
        let key = key.to_string();
        self.call(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO event_deliveries (subscription_key, cursor_seq) VALUES (?1, ?2)",
                params![key, cursor],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn lease_deliveries(&self, keys: &[String], lease: &Lease) -> StoreResult<Vec<DeliveryState>> {
        let (keys, lease) = (keys.to_vec(), lease.clone());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let mut leased = Vec::new();
            for key in keys {
                let row = tx
                    .query_row(
                        &format!(
                            "UPDATE event_deliveries SET owner = ?2, lease_until = ?4
                             WHERE subscription_key = ?1 AND (owner IS NULL OR owner = ?2 OR lease_until < ?3)
                             RETURNING {COLUMNS}"
                        ),
                        params![key, lease.owner, lease.now, lease.until],
                        |r| Ok(super::state(r)),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(state) = row {
                    leased.push(state?);
                }
            }
            tx.commit().map_err(backend)?;
            Ok(leased)
        })
        .await
    }

    async fn save_delivery(&self, state: &DeliveryState, owner: &str) -> StoreResult<bool> {
        let (s, owner) = (state.clone(), owner.to_string());
        self.call(move |conn| {
            let n = conn
                .execute(
                    super::SAVE_DELIVERY.sqlite(),
                    params![
                        s.key,
                        owner,
                        s.cursor,
                        s.attempts,
                        s.next_attempt_at,
                        s.delivered,
                        s.dead_lettered,
                        s.last_dead_event,
                        s.last_error
                    ],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn get_delivery(&self, key: &str) -> StoreResult<Option<DeliveryState>> {
        let key = key.to_string();
        self.read(move |conn| {
            conn.prepare_cached(super::DELIVERY.sqlite())
                .map_err(backend)?
                .query_row(params![key], |r| Ok(super::state(r)))
                .optional()
                .map_err(backend)
                .map(|found| found.map(|r| flatten(Ok(r))).transpose())?
        })
    }

    async fn delete_delivery(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.call(move |conn| {
            conn.execute(super::DELETE_DELIVERY.sqlite(), params![key]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn activity_head(&self) -> StoreResult<i64> {
        self.read(|conn| conn.query_row(super::ACTIVITY_HEAD.sqlite(), [], |r| r.get("head")).map_err(backend))
    }
}
