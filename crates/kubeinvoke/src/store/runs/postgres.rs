//! [`RunStore`] on PostgreSQL: every step that depends on the run's lease or cancel locks the
//! run's row first (`FOR UPDATE`), so a cancel and a start of the same run never interleave.

use crate::store::postgres::CachedQueries;
use async_trait::async_trait;

use super::{RUN_COLUMNS, RunStore, STARTED, TargetStart, TargetWindow};
use crate::command::CommandId;
use crate::fanout::{NewRun, RunId, RunRecord, RunState};
use crate::store::postgres::{PostgresStore, WORK_CHANNEL, db_error};
use crate::store::rows::Columns;
use crate::store::{Lease, StoreResult};

/// The schema of runs (a migration of `store/postgres.rs`).
pub(in crate::store) const MIGRATION: &str = r#"
CREATE TABLE command_runs (
    seq                 BIGSERIAL PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    scope_key           TEXT COLLATE "C" NOT NULL,
    scope               TEXT NOT NULL,
    state               TEXT NOT NULL,
    command             TEXT NOT NULL,
    context             BYTEA,
    cluster_token       TEXT,
    max_concurrency     TEXT NOT NULL,
    max_errors          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    created_by          TEXT NOT NULL,
    finished_at         BIGINT,
    owner               TEXT,
    lease_until         BIGINT,
    cancel_requested_by TEXT
);
CREATE INDEX command_runs_by_scope ON command_runs (scope_key, seq);
CREATE INDEX command_runs_unfinished ON command_runs (state) WHERE state IN ('Accepted', 'Running');
CREATE TABLE command_run_targets (
    run_id       TEXT NOT NULL REFERENCES command_runs (id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    cluster_uid  TEXT,
    cluster_id   TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT,
    command_id   TEXT,
    final_state  TEXT,
    exit_code    INTEGER,
    started_at   BIGINT,
    finished_at  BIGINT,
    final_reason TEXT,
    PRIMARY KEY (run_id, position)
);
"#;

/// Every target of a new run in one statement, from parallel arrays: one `INSERT` per target
/// made a run of 1,000 targets 1,000 round trips inside the fan-out's `POST`.
const INSERT_TARGETS: &str =
    "INSERT INTO command_run_targets (run_id, position, cluster_uid, cluster_id, state, reason)
     SELECT $1, t.position, t.cluster_uid, t.cluster_id, t.state, t.reason
     FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
          AS t (position, cluster_uid, cluster_id, state, reason)";

async fn select_run(
    client: &(impl CachedQueries + Sync),
    id: &str,
    scope_key: Option<&str>,
    window: TargetWindow,
) -> StoreResult<Option<RunRecord>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM command_runs WHERE id = $1 AND ($2::TEXT IS NULL OR scope_key = $2)");
    // The run and its targets are asked together: polled concurrently, the statements travel in
    // one pipelined burst on the connection instead of a round trip each. (Targets of a run that
    // turns out missing, or of another scope, are read for nothing and dropped.)
    let run_row = async { client.query_opt_cached(&sql, &[&id, &scope_key]).await.map_err(db_error) };
    let mut run = match window {
        TargetWindow::All => {
            let (row, targets) = tokio::try_join!(run_row, async {
                client.query_cached(super::TARGETS_OF_RUN.postgres(), &[&id]).await.map_err(db_error)
            })?;
            let Some(row) = row else { return Ok(None) };
            let mut run = super::run(&row)?;
            run.targets = targets.iter().map(super::target).collect::<Result<_, _>>()?;
            run
        }
        TargetWindow::Page { after, limit } => {
            let (after, rows) = (after.unwrap_or(-1), limit as i64 + 1);
            let (row, page, counts) = tokio::try_join!(
                run_row,
                async {
                    client.query_cached(super::TARGET_PAGE.postgres(), &[&id, &after, &rows]).await.map_err(db_error)
                },
                async { client.query_cached(super::TARGET_COUNTS.postgres(), &[&id]).await.map_err(db_error) },
            )?;
            let Some(row) = row else { return Ok(None) };
            let mut run = super::run(&row)?;
            (run.targets, run.paged) = super::page_of(
                page.iter().map(super::target).collect::<Result<_, _>>()?,
                limit,
                counts.iter().map(super::target_count).collect::<Result<_, _>>()?,
            );
            run
        }
    };
    if run.hold.is_some() {
        let decisions = client
            .query_cached(crate::store::approvals::RUN_DECISIONS.list.postgres(), &[&id])
            .await
            .map_err(db_error)?;
        run.decisions = decisions.iter().map(crate::store::approvals::decision).collect::<Result<_, _>>()?;
    }
    Ok(Some(run))
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn insert_run(&self, run: NewRun, lease: &Lease) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let state = run.queued_state().as_str();
        let (needed, deadline, requester) = crate::store::rows::hold_columns(run.hold.as_ref());
        tx.execute_cached(
            super::INSERT_RUN.postgres(),
            &[
                &run.id.as_str(),
                &run.scope.key,
                &run.scope.id,
                &run.command,
                &run.context,
                &run.cluster_token,
                &run.max_concurrency.to_string(),
                &run.max_errors.to_string(),
                &run.created_at,
                &run.created_by,
                &lease.owner,
                &lease.until,
                &state,
                &needed,
                &deadline,
                &requester,
            ],
        )
        .await
        .map_err(db_error)?;
        let targets = &run.targets;
        let positions: Vec<i64> = (0..targets.len() as i64).collect();
        let uids: Vec<Option<&str>> = targets.iter().map(|t| t.cluster_uid.as_deref()).collect();
        let ids: Vec<&str> = targets.iter().map(|t| t.cluster_id.as_str()).collect();
        let states: Vec<&str> =
            targets.iter().map(|t| if t.skipped.is_some() { "Skipped" } else { "Pending" }).collect();
        let reasons: Vec<Option<&str>> = targets.iter().map(|t| t.skipped.as_deref()).collect();
        tx.execute_cached(INSERT_TARGETS, &[&run.id.as_str(), &positions, &uids, &ids, &states, &reasons])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_run(
        &self,
        id: &RunId,
        scope_key: Option<&str>,
        window: TargetWindow,
    ) -> StoreResult<Option<RunRecord>> {
        let client = self.client().await?;
        select_run(&client, id.as_str(), scope_key, window).await
    }

    async fn list_runs(
        &self,
        scope_key: &str,
        before: Option<i64>,
        limit: usize,
        targets: usize,
    ) -> StoreResult<Vec<RunRecord>> {
        let client = self.client().await?;
        let ids = client
            .query_cached(
                super::RUN_IDS_OF_SCOPE.postgres(),
                &[&scope_key, &before.unwrap_or(i64::MAX), &(limit as i64)],
            )
            .await
            .map_err(db_error)?;
        let mut runs = Vec::with_capacity(ids.len());
        for row in ids {
            let id = row.text("id")?;
            if let Some(run) = select_run(&client, &id, None, TargetWindow::first(targets)).await? {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    async fn lease_runs(&self, lease: &Lease) -> StoreResult<Vec<RunId>> {
        let client = self.client().await?;
        let rows = client
            .query_cached(super::LEASE_RUNS.postgres(), &[&lease.owner, &lease.now, &lease.until])
            .await
            .map_err(db_error)?;
        rows.iter().map(|r| Ok(RunId::from_text(r.text("id")?))).collect()
    }

    async fn start_target(
        &self,
        run: &RunId,
        position: i64,
        command: &CommandId,
        lease: &Lease,
    ) -> StoreResult<TargetStart> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let (run, command) = (run.as_str(), command.as_str());
        let leased = tx
            .query_opt_cached(
                "SELECT 1 FROM command_runs
                 WHERE id = $1 AND owner = $2 AND lease_until >= $3 AND cancel_requested_by IS NULL
                   AND state IN ('Accepted', 'Running')
                 FOR UPDATE",
                &[&run, &lease.owner, &lease.now],
            )
            .await
            .map_err(db_error)?
            .is_some();
        let target = tx
            .query_opt_cached(
                "SELECT cluster_uid, state FROM command_run_targets WHERE run_id = $1 AND position = $2",
                &[&run, &position],
            )
            .await
            .map_err(db_error)?;
        let cluster_uid = match target {
            Some(row) if leased && row.text("state")? == "Pending" => row.opt_text("cluster_uid")?,
            _ => None,
        };
        let Some(cluster_uid) = cluster_uid else { return Ok(TargetStart::Refused) };
        let inserted = tx
            .execute_cached(
                "WITH inserted AS (
                   INSERT INTO commands (id, cluster_uid, state, command, context, cluster_token, submitted_at, submitted_by)
                   SELECT $1, c.uid, 'Accepted', r.command, r.context, r.cluster_token, $3, r.created_by
                   FROM command_runs r, clusters c WHERE r.id = $4 AND c.uid = $2
                   RETURNING id)
                 SELECT pg_notify($5, id) FROM inserted",
                &[&command, &cluster_uid, &lease.now, &run, &WORK_CHANNEL],
            )
            .await
            .map_err(db_error)?;
        let started = if inserted == 0 {
            tx.execute_cached(super::SKIP_DELETED_TARGET.postgres(), &[&run, &position, &super::cluster_deleted()])
                .await
                .map_err(db_error)?;
            TargetStart::ClusterGone
        } else {
            tx.execute_cached(super::START_TARGET_COMMAND.postgres(), &[&run, &position, &command, &STARTED])
                .await
                .map_err(db_error)?;
            tx.execute_cached(super::RUN_STARTED.postgres(), &[&run]).await.map_err(db_error)?;
            TargetStart::Started
        };
        tx.commit().await.map_err(db_error)?;
        Ok(started)
    }

    async fn skip_pending(&self, run: &RunId, position: Option<i64>, reason: &str) -> StoreResult<u64> {
        let client = self.client().await?;
        client
            .execute_cached(super::SKIP_PENDING.postgres(), &[&run.as_str(), &reason, &position])
            .await
            .map_err(db_error)
    }

    async fn settle_targets(&self, run: &RunId) -> StoreResult<u64> {
        let client = self.client().await?;
        client.execute_cached(super::SETTLE_TARGETS.postgres(), &[&run.as_str()]).await.map_err(db_error)
    }

    async fn finish_run(&self, run: &RunId, state: RunState, now: i64) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute_cached(
            "UPDATE command_run_targets t SET final_state = c.state, exit_code = c.exit_code,
                    started_at = c.started_at, finished_at = c.finished_at, final_reason = c.reason
             FROM commands c WHERE c.id = t.command_id AND t.run_id = $1",
            &[&run.as_str()],
        )
        .await
        .map_err(db_error)?;
        let n = tx
            .execute_cached(super::FINISH_RUN.postgres(), &[&run.as_str(), &state.as_str(), &now])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(n > 0)
    }

    async fn cancel_run(&self, id: &RunId, scope_key: &str, by: &str) -> StoreResult<Option<RunRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let asked = tx
            .execute_cached(super::REQUEST_RUN_CANCEL.postgres(), &[&id.as_str(), &scope_key, &by])
            .await
            .map_err(db_error)?;
        if asked > 0 {
            tx.execute_cached(super::CANCEL_PENDING_TARGETS.postgres(), &[&id.as_str(), &format!("Canceled by {by}")])
                .await
                .map_err(db_error)?;
        }
        let run = select_run(&tx, id.as_str(), Some(scope_key), TargetWindow::All).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(run)
    }

    async fn purge_runs(&self, finished_before: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        client.execute_cached(super::PURGE_RUNS.postgres(), &[&finished_before]).await.map_err(db_error)
    }
}
