//! The activity log in the store: appends under one lock (so the chain has a single order),
//! command events written from the command rows, filtered reads, and retention.

mod postgres;
mod sqlite;

use crate::store::sql::Sql;
use async_trait::async_trait;

use super::rows::Columns;
use super::{StoreError, StoreResult};
use crate::activity::filter::EventFilter;
use crate::activity::{ActivityEvent, FilterColumns, NewEvent};
use crate::command::{CommandId, CommandState};

pub(super) use postgres::MIGRATION as POSTGRES_MIGRATION;
pub(super) use sqlite::MIGRATION as SQLITE_MIGRATION;

/// A command whose events are not all in the log yet.
#[derive(Debug, Clone)]
pub struct CommandLogRow {
    pub id: CommandId,
    pub state: CommandState,
    /// What the log has of it already (`None`: nothing).
    pub logged_state: Option<CommandState>,
    pub cluster_id: String,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub command: String,
    pub submitted_by: String,
    pub saved_command: Option<String>,
    /// Plain parameters as stored (JSON), never secret ones.
    pub parameters: Option<String>,
    /// Approvals it waited for, if its cluster held it (`None`: it was never held).
    pub approvals_needed: Option<i64>,
    /// When its last approver released it into the queue.
    pub approved_at: Option<i64>,
    /// The identity it runs as (JSON of a `RunAs`), if its saved command names one.
    pub run_as: Option<String>,
}

/// Events for one command, and the state they bring the log to.
#[derive(Debug, Clone)]
pub struct CommandEvents {
    pub id: CommandId,
    /// The `logged_state` the row had when read: the events are written only if it still has it.
    pub from: Option<CommandState>,
    pub to: CommandState,
    pub events: Vec<NewEvent>,
}

#[async_trait]
pub trait ActivityStore: Send + Sync {
    /// Appends events at the head of the chain, in order.
    async fn append_events(&self, events: Vec<NewEvent>) -> StoreResult<()>;
    /// Commands whose events are not all logged, oldest first.
    async fn unlogged_commands(&self, limit: usize) -> StoreResult<Vec<CommandLogRow>>;
    /// Appends each command's events and records them as logged, in one transaction; a command
    /// logged meanwhile (by another replica) is skipped. Returns how many events were written.
    async fn log_command_events(&self, batches: Vec<CommandEvents>) -> StoreResult<usize>;
    /// Events of a subscription matching `filter`, newest first, older than `before` (a seq).
    async fn list_events(
        &self,
        subscription: &str,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<ActivityEvent>>;
    /// Every event after `after` (a seq), in chain order.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<ActivityEvent>>;
    /// Deletes events older than `before` (Unix ms), remembering the hash of the newest deleted
    /// one: the first kept event must follow it.
    async fn purge_events(&self, before: i64) -> StoreResult<u64>;
    /// The hash the oldest stored event must follow ([`GENESIS`] until something was purged).
    async fn chain_anchor(&self) -> StoreResult<String>;
}

/// The setting that keeps the hash of the newest purged event.
const ANCHOR_SETTING: &str = "activity-anchor";

pub(super) use crate::activity::chain::GENESIS;

macro_rules! event_columns {
    () => {
        "seq, event_id, event_time, content, prev_hash, hash, subscription_key, group_key, \
         resource_key, provider_key, caller, correlation_id, status"
    };
}
const EVENT_COLUMNS: &str = event_columns!();
/// Events after a seq, oldest first (what deliveries read).
static EVENTS_AFTER: Sql =
    Sql::new(concat!("SELECT ", event_columns!(), " FROM activity_log WHERE seq > $1 ORDER BY seq LIMIT $2"));

fn event(r: &impl Columns) -> Result<ActivityEvent, StoreError> {
    Ok(ActivityEvent {
        seq: r.int("seq")?,
        event_id: r.text("event_id")?,
        time: r.int("event_time")?,
        content: r.text("content")?,
        prev_hash: r.text("prev_hash")?,
        hash: r.text("hash")?,
        columns: FilterColumns {
            event_id: r.text("event_id")?,
            time: r.int("event_time")?,
            subscription_key: r.text("subscription_key")?,
            group_key: r.text("group_key")?,
            resource_key: r.text("resource_key")?,
            provider_key: r.text("provider_key")?,
            caller: r.text("caller")?,
            correlation_id: r.text("correlation_id")?,
            status: r.text("status")?,
        },
    })
}

/// The command columns [`log_row`] reads; the cluster's ARM id follows them (`cluster_arm_id`).
const LOG_COLUMNS: &str =
    "c.id, c.state, c.logged_state, c.submitted_at, c.started_at, c.finished_at, c.exit_code, c.reason,
    c.command, c.submitted_by, c.saved_command, c.environment, c.approvals_needed, c.approved_at, c.run_as";

fn log_row(r: &impl Columns) -> Result<CommandLogRow, StoreError> {
    let state = |text: String| {
        CommandState::parse(&text).ok_or_else(|| StoreError::Backend(anyhow::anyhow!("unknown stored state {text:?}")))
    };
    Ok(CommandLogRow {
        id: CommandId::from_text(r.text("id")?),
        state: state(r.text("state")?)?,
        logged_state: r.opt_text("logged_state")?.map(state).transpose()?,
        cluster_id: r.text("cluster_arm_id")?,
        submitted_at: r.int("submitted_at")?,
        started_at: r.opt_int("started_at")?,
        finished_at: r.opt_int("finished_at")?,
        exit_code: r.opt_int32("exit_code")?,
        reason: r.opt_text("reason")?,
        command: r.text("command")?,
        submitted_by: r.text("submitted_by")?,
        saved_command: r.opt_text("saved_command")?,
        parameters: r.opt_text("environment")?,
        approvals_needed: r.opt_int("approvals_needed")?,
        approved_at: r.opt_int("approved_at")?,
        run_as: r.opt_text("run_as")?,
    })
}

/// The filter columns of a new event, from its canonical content (what `audit verify` recomputes).
fn columns_of(content: &str) -> StoreResult<FilterColumns> {
    FilterColumns::of_content(content)
        .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("an activity event's content is not canonical")))
}

// The statements both dialects share (PostgreSQL's `$n`; SQLite reads them as `?n`).

static CHAIN_HEAD: Sql = Sql::new("SELECT hash FROM activity_log ORDER BY seq DESC LIMIT 1");
static APPEND_EVENT: Sql = Sql::new(
    "INSERT INTO activity_log (event_id, event_time, subscription_key, group_key, resource_key, provider_key,
                                       caller, correlation_id, status, content, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
);
static SET_ANCHOR: Sql =
    Sql::new("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2");
static ANCHOR: Sql = Sql::new("SELECT value FROM settings WHERE name = $1");
