//! Writes command events into the activity log from the command rows: a row records the last
//! state logged (`logged_state`), so every `approval requested`, `accepted`, `started` and
//! `finished` event is written exactly once, whichever replica writes it and however the server
//! stopped in between. (Approvers' decisions are logged by their requests, naming the approver.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::activity::{NewEvent, caller_of, string_properties};
use crate::command::CommandState;
use crate::store::{CommandEvents, CommandLogRow, Store};
use crate::time::now_millis;

/// Commands logged per pass.
const BATCH: usize = 200;
/// The status of a held command's first event.
pub(crate) const APPROVAL_REQUESTED: &str = "ApprovalRequested";

/// The events a row still owes the log, oldest first.
pub(crate) fn command_events(row: &CommandLogRow) -> CommandEvents {
    let operation = match row.saved_command {
        Some(_) => "Microsoft.ContainerService/managedClusters/runSavedCommand/action",
        None => "Microsoft.ContainerService/managedClusters/runcommand/action",
    };
    let rank = |state: Option<CommandState>| match state {
        None => 0,
        Some(CommandState::PendingApproval) => 1,
        Some(CommandState::Accepted) => 2,
        Some(CommandState::Running) => 3,
        Some(_) => 4,
    };
    let logged = rank(row.logged_state);
    let event = |status: &str, time: i64, extra: Vec<(String, String)>| {
        let mut properties = vec![("commandId".to_string(), row.id.to_string())];
        properties.extend(extra);
        NewEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            time,
            operation: operation.to_string(),
            status: status.to_string(),
            sub_status: String::new(),
            caller: caller_of(&row.submitted_by),
            correlation_id: row.id.to_string(),
            resource_id: row.cluster_id.clone(),
            properties: string_properties(properties),
        }
    };
    let mut events = Vec::new();
    let what = || {
        let mut what = vec![("command".to_string(), row.command.clone())];
        if let Some(saved) = &row.saved_command {
            what.push(("savedCommand".into(), saved.clone()));
            what.push(("parameters".into(), row.parameters.clone().unwrap_or_else(|| "{}".into())));
        }
        let run_as = row.run_as.as_deref().and_then(|text| serde_json::from_str::<crate::run_as::RunAs>(text).ok());
        if let Some(run_as) = run_as {
            what.push(("runAs".into(), run_as.describe()));
        }
        what
    };
    match row.approvals_needed {
        Some(needed) => {
            if logged < 1 {
                let mut asked = what();
                asked.push(("approvalsNeeded".into(), needed.to_string()));
                events.push(event(APPROVAL_REQUESTED, row.submitted_at, asked));
            }
            // Accepted only if approved: a rejected or expired command never was.
            if logged < 2
                && let Some(approved) = row.approved_at
            {
                events.push(event("Accepted", approved, Vec::new()));
            }
        }
        None if logged < 2 => events.push(event("Accepted", row.submitted_at, what())),
        None => {}
    }
    if logged < 3
        && let Some(started) = row.started_at
    {
        events.push(event("Started", started, Vec::new()));
    }
    if logged < 4 && row.state.is_terminal() {
        let mut outcome = Vec::new();
        if let Some(code) = row.exit_code {
            outcome.push(("exitCode".to_string(), code.to_string()));
        }
        if let Some(reason) = &row.reason {
            outcome.push(("reason".to_string(), reason.clone()));
        }
        if let (Some(started), Some(finished)) = (row.started_at, row.finished_at) {
            outcome.push(("durationMs".to_string(), (finished - started).to_string()));
        }
        events.push(event(row.state.as_str(), row.finished_at.unwrap_or(row.submitted_at), outcome));
    }
    CommandEvents { id: row.id.clone(), from: row.logged_state, to: row.state, events }
}

pub struct ActivityLogger {
    store: Arc<dyn Store>,
    /// Off (`--activity-log false`): nothing is written.
    enabled: bool,
    wake: Notify,
    /// How long events are kept.
    retention: Duration,
}

impl ActivityLogger {
    pub fn start(store: Arc<dyn Store>, retention: Duration, enabled: bool) -> (Arc<Self>, JoinHandle<()>) {
        let logger = Arc::new(ActivityLogger { store, enabled, wake: Notify::new(), retention });
        let task = if enabled { tokio::spawn(logger.clone().run()) } else { tokio::spawn(async {}) };
        (logger, task)
    }

    /// Something was written: log it soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Appends events for writes that are not commands (clusters, roles, refusals, …).
    pub async fn append(&self, events: Vec<NewEvent>) {
        if !self.enabled {
            return;
        }
        if let Err(e) = self.store.activity().append_events(events).await {
            tracing::error!(error = %e, "appending to the activity log failed");
        }
    }

    async fn run(self: Arc<Self>) {
        let mut passes: u64 = 0;
        loop {
            let written = match self.pass().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "writing command events to the activity log failed; retrying");
                    0
                }
            };
            passes += 1;
            if passes % 20_000 == 0 {
                self.purge().await;
            }
            if written == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
    }

    async fn pass(&self) -> Result<usize, crate::store::StoreError> {
        let rows = self.store.activity().unlogged_commands(BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let batches = rows.iter().map(command_events).collect();
        self.store.activity().log_command_events(batches).await
    }

    async fn purge(&self) {
        let horizon = now_millis().saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        match self.store.activity().purge_events(horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "activity log events past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "purging the activity log failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandId;

    fn row(state: CommandState, logged: Option<CommandState>, started: Option<i64>) -> CommandLogRow {
        CommandLogRow {
            id: CommandId::from_text("c1"),
            state,
            logged_state: logged,
            cluster_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k"
                .into(),
            submitted_at: 1,
            started_at: started,
            finished_at: state.is_terminal().then_some(9),
            exit_code: (state == CommandState::Succeeded).then_some(0),
            reason: None,
            command: "true".into(),
            submitted_by: "app (oid)".into(),
            saved_command: None,
            parameters: None,
            approvals_needed: None,
            approved_at: None,
            run_as: None,
        }
    }

    fn statuses(events: &CommandEvents) -> Vec<&str> {
        events.events.iter().map(|e| e.status.as_str()).collect()
    }

    #[test]
    fn each_state_is_logged_once_even_when_the_row_moved_on() {
        assert_eq!(statuses(&command_events(&row(CommandState::Accepted, None, None))), ["Accepted"]);
        assert_eq!(
            statuses(&command_events(&row(CommandState::Succeeded, None, Some(5)))),
            ["Accepted", "Started", "Succeeded"]
        );
        let rest = command_events(&row(CommandState::Succeeded, Some(CommandState::Running), Some(5)));
        assert_eq!(statuses(&rest), ["Succeeded"]);
        assert_eq!(rest.events[0].properties["durationMs"], "4");
        assert_eq!(
            statuses(&command_events(&row(CommandState::Canceled, Some(CommandState::Accepted), None))),
            ["Canceled"]
        );
        assert_eq!(rest.events[0].caller, "app");
    }

    #[test]
    fn a_held_command_is_logged_as_requested_and_accepted_only_once_approved() {
        let held = |state, logged, approved_at| CommandLogRow {
            approvals_needed: Some(2),
            approved_at,
            ..row(state, logged, None)
        };
        let asked = command_events(&held(CommandState::PendingApproval, None, None));
        assert_eq!(statuses(&asked), [APPROVAL_REQUESTED]);
        assert_eq!(asked.events[0].properties["approvalsNeeded"], "2");
        assert_eq!(
            statuses(&command_events(&held(CommandState::Accepted, Some(CommandState::PendingApproval), Some(7)))),
            ["Accepted"]
        );
        assert_eq!(
            statuses(&command_events(&held(CommandState::Canceled, Some(CommandState::PendingApproval), None))),
            ["Canceled"],
            "a rejected command was never accepted"
        );
        assert_eq!(statuses(&command_events(&held(CommandState::Failed, None, None))), [APPROVAL_REQUESTED, "Failed"]);
    }
}
