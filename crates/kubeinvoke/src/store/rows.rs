//! What both backends share about rows: the column lists, how a row becomes a record, and the
//! JSON kept in text columns. Each backend only says how to read one column of its row type
//! ([`Columns`]); the records are built here, once.

use serde_json::{Map, Value};

use super::{PrincipalRecord, RoleAssignmentRecord, StoreError};
use crate::command::{CommandId, CommandRecord, CommandState};

pub const COMMAND_COLUMNS: &str =
    "id, state, submitted_at, started_at, finished_at, exit_code, logs, reason, expires_at";
pub const PRINCIPAL_COLUMNS: &str = "app_id, object_id, display_name, secret_salt, secret_hash, created_at";
pub const ASSIGNMENT_COLUMNS: &str = "name, scope, role_definition_id, principal_id, principal_type, created_at";

/// One row of a backend's result, read by column position.
pub trait Columns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn opt_int32(&self, i: usize) -> Result<Option<i32>, StoreError>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError>;
}

/// A row of [`COMMAND_COLUMNS`] (more columns may follow).
pub fn command(r: &impl Columns) -> Result<CommandRecord, StoreError> {
    let state = r.text(1)?;
    Ok(CommandRecord {
        id: CommandId::from_text(r.text(0)?),
        state: CommandState::parse(&state).ok_or_else(|| corrupt(format!("unknown stored state {state:?}")))?,
        submitted_at: r.int(2)?,
        started_at: r.opt_int(3)?,
        finished_at: r.opt_int(4)?,
        exit_code: r.opt_int32(5)?,
        logs: r.opt_text(6)?,
        reason: r.opt_text(7)?,
        expires_at: r.opt_int(8)?,
    })
}

/// A row of [`PRINCIPAL_COLUMNS`].
pub fn principal(r: &impl Columns) -> Result<PrincipalRecord, StoreError> {
    Ok(PrincipalRecord {
        app_id: r.text(0)?,
        object_id: r.text(1)?,
        display_name: r.text(2)?,
        secret_salt: r.bytes(3)?,
        secret_hash: r.bytes(4)?,
        created_at: r.int(5)?,
    })
}

/// A row of [`ASSIGNMENT_COLUMNS`].
pub fn assignment(r: &impl Columns) -> Result<RoleAssignmentRecord, StoreError> {
    Ok(RoleAssignmentRecord {
        name: r.text(0)?,
        scope: r.text(1)?,
        role_definition_id: r.text(2)?,
        principal_id: r.text(3)?,
        principal_type: r.text(4)?,
        created_at: r.int(5)?,
    })
}

/// A JSON object as a text column holds it.
pub fn json_text(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

pub fn json_map(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored JSON is corrupt: {e}")))
}

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(anyhow::anyhow!(what))
}

/// Command options as their columns hold them: `(environment JSON, secret names JSON, timeout ms)`.
pub fn option_columns(options: &super::CommandOptions) -> (Option<String>, Option<String>, Option<i64>) {
    let environment = (!options.environment.is_empty()).then(|| {
        Value::Object(options.environment.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
            .to_string()
    });
    let secrets = (!options.secret_names.is_empty()).then(|| Value::from(options.secret_names.clone()).to_string());
    let timeout = options.timeout.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
    (environment, secrets, timeout)
}

/// The options of a claimed or listed command from its columns.
pub fn options_from(
    environment: Option<String>,
    secrets: Option<String>,
    timeout_ms: Option<i64>,
    saved_command: Option<String>,
) -> Result<super::CommandOptions, StoreError> {
    let environment = match environment {
        Some(text) => {
            json_map(&text)?.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect()
        }
        None => Vec::new(),
    };
    let secret_names = match secrets {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| corrupt(format!("stored secret names are corrupt: {e}")))?
        }
        None => Vec::new(),
    };
    Ok(super::CommandOptions {
        environment,
        secret_names,
        timeout: timeout_ms.map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        saved_command,
    })
}
