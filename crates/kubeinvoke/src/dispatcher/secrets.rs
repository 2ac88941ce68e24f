//! Secret parameter values, held only in this server's memory from acceptance until the command
//! starts. They never reach the store, a log or an answer; a command whose secrets are gone (the
//! server restarted) ends `Failed`/`SecretsLost` instead of running without them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::command::CommandId;

#[derive(Default)]
pub(super) struct Secrets(Mutex<HashMap<CommandId, Vec<(String, String)>>>);

impl Secrets {
    pub(super) fn insert(&self, id: CommandId, values: Vec<(String, String)>) {
        self.lock().insert(id, values);
    }

    /// The values, removed: a command runs once.
    pub(super) fn take(&self, id: &CommandId) -> Option<Vec<(String, String)>> {
        self.lock().remove(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CommandId, Vec<(String, String)>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Debug output never shows the values.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} commands)", self.lock().len())
    }
}
