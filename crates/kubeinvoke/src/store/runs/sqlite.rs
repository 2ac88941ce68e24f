//! [`RunStore`] on SQLite: one writer serialises every step, so the checks inside a transaction
//! hold until it commits.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{RUN_COLUMNS, RunStore, STARTED, TargetStart, TargetWindow};
use crate::command::CommandId;
use crate::fanout::{NewRun, RunId, RunRecord, RunState};
use crate::store::sqlite::{SqliteStore, backend, flatten};
use crate::store::{Lease, StoreResult};

/// The schema of runs (a migration of `store/sqlite.rs`).
pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE command_runs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    scope_key           TEXT NOT NULL,
    scope               TEXT NOT NULL,
    state               TEXT NOT NULL,
    command             TEXT NOT NULL,
    context             BLOB,
    cluster_token       TEXT,
    max_concurrency     TEXT NOT NULL,
    max_errors          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    created_by          TEXT NOT NULL,
    finished_at         INTEGER,
    owner               TEXT,
    lease_until         INTEGER,
    cancel_requested_by TEXT
);
CREATE INDEX command_runs_by_scope ON command_runs (scope_key, seq);
CREATE INDEX command_runs_unfinished ON command_runs (state);
CREATE TABLE command_run_targets (
    run_id       TEXT NOT NULL REFERENCES command_runs (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    cluster_uid  TEXT,
    cluster_id   TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT,
    command_id   TEXT,
    final_state  TEXT,
    exit_code    INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    final_reason TEXT,
    PRIMARY KEY (run_id, position)
);
"#;

fn select_run(
    conn: &rusqlite::Connection,
    id: &str,
    scope_key: Option<&str>,
    window: TargetWindow,
) -> StoreResult<Option<RunRecord>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM command_runs WHERE id = ?1 AND (?2 IS NULL OR scope_key = ?2)");
    let found = conn
        .prepare_cached(&sql)
        .map_err(backend)?
        .query_row(params![id, scope_key], |r| Ok(super::run(r)))
        .optional()
        .map_err(backend)?;
    let Some(mut run) = found.transpose()? else { return Ok(None) };
    match window {
        TargetWindow::All => {
            let mut stmt = conn.prepare_cached(super::TARGETS_OF_RUN.sqlite()).map_err(backend)?;
            let targets = stmt.query_map(params![id], |r| Ok(super::target(r))).map_err(backend)?;
            run.targets = targets.map(flatten).collect::<Result<_, _>>()?;
        }
        TargetWindow::Page { after, limit } => {
            let mut stmt = conn.prepare_cached(super::TARGET_PAGE.sqlite()).map_err(backend)?;
            let rows = stmt
                .query_map(params![id, after.unwrap_or(-1), limit as i64 + 1], |r| Ok(super::target(r)))
                .map_err(backend)?;
            let page = rows.map(flatten).collect::<Result<_, _>>()?;
            let mut stmt = conn.prepare_cached(super::TARGET_COUNTS.sqlite()).map_err(backend)?;
            let counts = stmt.query_map(params![id], |r| Ok(super::target_count(r))).map_err(backend)?;
            (run.targets, run.paged) = super::page_of(page, limit, counts.map(flatten).collect::<Result<_, _>>()?);
        }
    }
    if run.hold.is_some() {
        let mut stmt = conn.prepare_cached(crate::store::approvals::RUN_DECISIONS.list.sqlite()).map_err(backend)?;
        let decisions = stmt.query_map(params![id], |r| Ok(crate::store::approvals::decision(r))).map_err(backend)?;
        run.decisions = decisions.map(flatten).collect::<Result<_, _>>()?;
    }
    Ok(Some(run))
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn insert_run(&self, run: NewRun, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let (needed, deadline, requester) = crate::store::rows::hold_columns(run.hold.as_ref());
            tx.execute(
                super::INSERT_RUN.sqlite(),
                params![
                    run.id.as_str(),
                    run.scope.key,
                    run.scope.id,
                    run.command,
                    run.context,
                    run.cluster_token,
                    run.max_concurrency.to_string(),
                    run.max_errors.to_string(),
                    run.created_at,
                    run.created_by,
                    lease.owner,
                    lease.until,
                    run.queued_state().as_str(),
                    needed,
                    deadline,
                    requester
                ],
            )
            .map_err(backend)?;
            for (position, target) in run.targets.iter().enumerate() {
                let state = if target.skipped.is_some() { "Skipped" } else { "Pending" };
                tx.execute(
                    super::INSERT_TARGET.sqlite(),
                    params![
                        run.id.as_str(),
                        position as i64,
                        target.cluster_uid,
                        target.cluster_id,
                        state,
                        target.skipped
                    ],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_run(
        &self,
        id: &RunId,
        scope_key: Option<&str>,
        window: TargetWindow,
    ) -> StoreResult<Option<RunRecord>> {
        let (id, scope_key) = (id.to_string(), scope_key.map(str::to_string));
        self.read(move |conn| select_run(conn, &id, scope_key.as_deref(), window))
    }

    async fn list_runs(
        &self,
        scope_key: &str,
        before: Option<i64>,
        limit: usize,
        targets: usize,
    ) -> StoreResult<Vec<RunRecord>> {
        let scope_key = scope_key.to_string();
        self.read(move |conn| {
            let ids: Vec<String> = {
                let mut stmt = conn.prepare_cached(super::RUN_IDS_OF_SCOPE.sqlite()).map_err(backend)?;
                let rows = stmt
                    .query_map(params![scope_key, before.unwrap_or(i64::MAX), limit as i64], |r| r.get("id"))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            ids.iter().filter_map(|id| select_run(conn, id, None, TargetWindow::first(targets)).transpose()).collect()
        })
    }

    async fn lease_runs(&self, lease: &Lease) -> StoreResult<Vec<RunId>> {
        let lease = lease.clone();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(super::LEASE_RUNS.sqlite()).map_err(backend)?;
            let rows = stmt
                .query_map(params![lease.owner, lease.now, lease.until], |r| r.get::<_, String>("id"))
                .map_err(backend)?;
            rows.map(|r| r.map(RunId::from_text).map_err(backend)).collect()
        })
        .await
    }

    async fn start_target(
        &self,
        run: &RunId,
        position: i64,
        command: &CommandId,
        lease: &Lease,
    ) -> StoreResult<TargetStart> {
        let (run, command, lease) = (run.to_string(), command.to_string(), lease.clone());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let target: Option<(Option<String>, String)> = tx
                .query_row(
                    "SELECT t.cluster_uid, t.state FROM command_runs r
                     JOIN command_run_targets t ON t.run_id = r.id AND t.position = ?2
                     WHERE r.id = ?1 AND r.owner = ?3 AND r.lease_until >= ?4 AND r.cancel_requested_by IS NULL
                       AND r.state IN ('Accepted', 'Running')",
                    params![run, position, lease.owner, lease.now],
                    |r| Ok((r.get("cluster_uid")?, r.get("state")?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((Some(cluster_uid), state)) = target else { return Ok(TargetStart::Refused) };
            if state != "Pending" {
                return Ok(TargetStart::Refused);
            }
            let exists = tx
                .query_row("SELECT 1 FROM clusters WHERE uid = ?1", params![cluster_uid], |_| Ok(()))
                .optional()
                .map_err(backend)?
                .is_some();
            if !exists {
                tx.execute(
                    super::SKIP_DELETED_TARGET.sqlite(),
                    params![run, position, super::cluster_deleted()],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                return Ok(TargetStart::ClusterGone);
            }
            tx.execute(
                "INSERT INTO commands (id, cluster_uid, state, command, context, cluster_token, submitted_at, submitted_by)
                 SELECT ?1, ?2, 'Accepted', command, context, cluster_token, ?3, created_by FROM command_runs WHERE id = ?4",
                params![command, cluster_uid, lease.now, run],
            )
            .map_err(backend)?;
            tx.execute(
                super::START_TARGET_COMMAND.sqlite(),
                params![run, position, command, STARTED],
            )
            .map_err(backend)?;
            tx.execute(super::RUN_STARTED.sqlite(), params![run])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(TargetStart::Started)
        })
        .await
    }

    async fn skip_pending(&self, run: &RunId, position: Option<i64>, reason: &str) -> StoreResult<u64> {
        let (run, reason) = (run.to_string(), reason.to_string());
        self.call(move |conn| {
            let n = conn.execute(super::SKIP_PENDING.sqlite(), params![run, reason, position]).map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn settle_targets(&self, run: &RunId) -> StoreResult<u64> {
        let run = run.to_string();
        self.call(move |conn| {
            let settled = conn.prepare_cached(super::SETTLE_TARGETS.sqlite()).and_then(|mut s| s.execute(params![run]));
            Ok(settled.map_err(backend)? as u64)
        })
        .await
    }

    async fn finish_run(&self, run: &RunId, state: RunState, now: i64) -> StoreResult<bool> {
        let run = run.to_string();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute(
                "UPDATE command_run_targets SET final_state = c.state, exit_code = c.exit_code,
                        started_at = c.started_at, finished_at = c.finished_at, final_reason = c.reason
                 FROM commands c WHERE c.id = command_run_targets.command_id AND command_run_targets.run_id = ?1",
                params![run],
            )
            .map_err(backend)?;
            let n = tx.execute(super::FINISH_RUN.sqlite(), params![run, state.as_str(), now]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn cancel_run(&self, id: &RunId, scope_key: &str, by: &str) -> StoreResult<Option<RunRecord>> {
        let (id, scope_key, by) = (id.to_string(), scope_key.to_string(), by.to_string());
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let asked = tx.execute(super::REQUEST_RUN_CANCEL.sqlite(), params![id, scope_key, by]).map_err(backend)?;
            if asked > 0 {
                tx.execute(super::CANCEL_PENDING_TARGETS.sqlite(), params![id, format!("Canceled by {by}")])
                    .map_err(backend)?;
            }
            let run = select_run(&tx, &id, Some(&scope_key), TargetWindow::All)?;
            tx.commit().map_err(backend)?;
            Ok(run)
        })
        .await
    }

    async fn purge_runs(&self, finished_before: i64) -> StoreResult<u64> {
        self.call(move |conn| {
            let n = conn.execute(super::PURGE_RUNS.sqlite(), params![finished_before]).map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }
}
