//! [`ActivityStore`] on SQLite: the single writer is the chain's lock.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{ActivityStore, CommandEvents, CommandLogRow, EVENT_COLUMNS, LOG_COLUMNS, columns_of};
use crate::activity::chain::{GENESIS, hash};
use crate::activity::filter::EventFilter;
use crate::activity::{ActivityEvent, NewEvent};
use crate::store::StoreResult;
use crate::store::sqlite::{SqliteStore, backend, flatten};

pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE activity_log (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    event_time       INTEGER NOT NULL,
    subscription_key TEXT NOT NULL,
    group_key        TEXT NOT NULL,
    resource_key     TEXT NOT NULL,
    provider_key     TEXT NOT NULL,
    caller           TEXT NOT NULL,
    correlation_id   TEXT NOT NULL,
    status           TEXT NOT NULL,
    content          TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL
);
CREATE INDEX activity_by_time ON activity_log (subscription_key, event_time);
ALTER TABLE commands ADD COLUMN logged_state TEXT;
UPDATE commands SET logged_state = state;
CREATE INDEX commands_unlogged ON commands (seq) WHERE logged_state IS NOT state;
"#;

fn append(tx: &Transaction<'_>, events: &[crate::activity::NewEvent]) -> StoreResult<()> {
    let mut prev: String = tx
        .query_row(super::CHAIN_HEAD.sqlite(), [], |r| r.get("hash"))
        .optional()
        .map_err(backend)?
        .unwrap_or_else(|| GENESIS.to_string());
    let mut insert = tx.prepare_cached(super::APPEND_EVENT.sqlite()).map_err(backend)?;
    for event in events {
        let content = event.content();
        let next = hash(&prev, &content);
        let columns = columns_of(&content)?;
        insert
            .execute(params![
                columns.event_id,
                columns.time,
                columns.subscription_key,
                columns.group_key,
                columns.resource_key,
                columns.provider_key,
                columns.caller,
                columns.correlation_id,
                columns.status,
                content,
                prev,
                next
            ])
            .map_err(backend)?;
        prev = next;
    }
    Ok(())
}

#[async_trait]
impl ActivityStore for SqliteStore {
    async fn append_events(&self, events: Vec<NewEvent>) -> StoreResult<()> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            append(&tx, &events)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn unlogged_commands(&self, limit: usize) -> StoreResult<Vec<CommandLogRow>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {LOG_COLUMNS},
                        '/subscriptions/' || cl.subscription_id || '/resourceGroups/' ||
                        (SELECT g.name FROM resource_groups g WHERE g.subscription_id = cl.subscription_id AND g.name_key = cl.group_key)
                        || '/providers/Microsoft.ContainerService/managedClusters/' || cl.name AS cluster_arm_id
                 FROM commands c JOIN clusters cl ON cl.uid = c.cluster_uid
                 WHERE c.logged_state IS NOT c.state ORDER BY c.seq LIMIT ?1"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params![limit as i64], |r| Ok(super::log_row(r)))
                .map_err(backend)?;
            rows.map(flatten).collect()
        })
    }

    async fn log_command_events(&self, batches: Vec<CommandEvents>) -> StoreResult<usize> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let mut written = 0;
            for batch in batches {
                let marked = tx
                    .execute(
                        "UPDATE commands SET logged_state = ?2 WHERE id = ?1 AND logged_state IS ?3",
                        params![batch.id, batch.to.as_str(), batch.from.map(|s| s.as_str())],
                    )
                    .map_err(backend)?;
                if marked == 1 {
                    append(&tx, &batch.events)?;
                    written += batch.events.len();
                }
            }
            tx.commit().map_err(backend)?;
            Ok(written)
        })
        .await
    }

    async fn list_events(
        &self,
        subscription: &str,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<ActivityEvent>> {
        let (subscription, filter) = (subscription.to_lowercase(), filter.clone());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM activity_log
                 WHERE subscription_key = ?1 AND seq < ?2 AND event_time >= ?3 AND event_time <= ?4
                   AND (?5 IS NULL OR group_key = ?5)
                   AND (?6 IS NULL OR resource_key = ?6 OR substr(resource_key, 1, length(?6) + 1) = ?6 || '/')
                   AND (?7 IS NULL OR correlation_id = ?7)
                   AND (?8 IS NULL OR provider_key = ?8)
                   AND (?9 IS NULL OR caller = ?9)
                   AND (?10 IS NULL OR status = ?10)
                 ORDER BY seq DESC LIMIT ?11"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![
                        subscription,
                        before.unwrap_or(i64::MAX),
                        filter.since.unwrap_or(0),
                        filter.until.unwrap_or(i64::MAX),
                        filter.group,
                        filter.resource,
                        filter.correlation_id,
                        filter.provider,
                        filter.caller,
                        filter.status,
                        limit as i64
                    ],
                    |r| Ok(super::event(r)),
                )
                .map_err(backend)?;
            rows.map(flatten).collect()
        })
    }

    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<ActivityEvent>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(super::EVENTS_AFTER.sqlite()).map_err(backend)?;
            let rows = stmt.query_map(params![after, limit as i64], |r| Ok(super::event(r))).map_err(backend)?;
            rows.map(flatten).collect()
        })
    }

    async fn purge_events(&self, before: i64) -> StoreResult<u64> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let newest: Option<String> = tx
                .query_row(
                    "SELECT hash FROM activity_log WHERE event_time < ?1 ORDER BY seq DESC LIMIT 1",
                    params![before],
                    |r| r.get("hash"),
                )
                .optional()
                .map_err(backend)?;
            let Some(anchor) = newest else { return Ok(0) };
            let n = tx
                .execute(
                    "DELETE FROM activity_log WHERE seq <= (SELECT seq FROM activity_log WHERE hash = ?1)",
                    params![anchor],
                )
                .map_err(backend)?;
            tx.execute(super::SET_ANCHOR.sqlite(), params![super::ANCHOR_SETTING, anchor.as_bytes()])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn chain_anchor(&self) -> StoreResult<String> {
        self.read(|conn| {
            let stored: Option<Vec<u8>> = conn
                .query_row(super::ANCHOR.sqlite(), params![super::ANCHOR_SETTING], |r| r.get("value"))
                .optional()
                .map_err(backend)?;
            Ok(stored.map_or_else(|| super::GENESIS.to_string(), |v| String::from_utf8_lossy(&v).into_owned()))
        })
    }
}
