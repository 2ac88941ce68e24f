//! [`DeliveryStore`] on PostgreSQL.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::{COLUMNS, DeliveryState, DeliveryStore};
use crate::store::postgres::{PostgresStore, db_error};
use crate::store::rows::Columns;
use crate::store::{Lease, StoreResult};

pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE event_deliveries (
    subscription_key TEXT PRIMARY KEY,
    cursor_seq       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL DEFAULT 0,
    delivered        BIGINT NOT NULL DEFAULT 0,
    dead_lettered    BIGINT NOT NULL DEFAULT 0,
    last_dead_event  TEXT,
    last_error       TEXT,
    owner            TEXT,
    lease_until      BIGINT
);
"#;

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn init_delivery(&self, key: &str, cursor: i64) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute_cached(
                "INSERT INTO event_deliveries (subscription_key, cursor_seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &cursor],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn lease_deliveries(&self, keys: &[String], lease: &Lease) -> StoreResult<Vec<DeliveryState>> {
        let client = self.client().await?;
        let rows = client
            .query_cached(
                &format!(
                    "UPDATE event_deliveries SET owner = $2, lease_until = $4
                     WHERE subscription_key = ANY($1) AND (owner IS NULL OR owner = $2 OR lease_until < $3)
                     RETURNING {COLUMNS}"
                ),
                &[&keys, &lease.owner, &lease.now, &lease.until],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(super::state).collect()
    }

    async fn save_delivery(&self, s: &DeliveryState, owner: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute_cached(
                super::SAVE_DELIVERY.postgres(),
                &[
                    &s.key,
                    &owner,
                    &s.cursor,
                    &s.attempts,
                    &s.next_attempt_at,
                    &s.delivered,
                    &s.dead_lettered,
                    &s.last_dead_event,
                    &s.last_error,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(n == 1)
    }

    async fn get_delivery(&self, key: &str) -> StoreResult<Option<DeliveryState>> {
        let client = self.client().await?;
        let row = client.query_opt_cached(super::DELIVERY.postgres(), &[&key]).await.map_err(db_error)?;
        row.as_ref().map(super::state).transpose()
    }

    async fn delete_delivery(&self, key: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client.execute_cached(super::DELETE_DELIVERY.postgres(), &[&key]).await.map_err(db_error)?;
        Ok(())
    }

    async fn activity_head(&self) -> StoreResult<i64> {
        let client = self.client().await?;
        client.query_one_cached(super::ACTIVITY_HEAD.postgres(), &[]).await.map_err(db_error)?.int("head")
    }
}
