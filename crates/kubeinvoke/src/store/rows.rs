//! What both backends share about rows: a column is read by its name, never by its position, and
//! a read that fails is an error, never a panic. Each backend says how to read one named column of
//! its row type ([`Columns`]); each aggregate builds its records from them once, next to its
//! column list.

use serde_json::{Map, Value};

use super::StoreError;

/// One row of a backend's result, read by column name.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn opt_int32(&self, column: &str) -> Result<Option<i32>, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
}

/// A JSON object as a text column holds it.
pub(super) fn json_text(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

pub(super) fn json_map(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("stored JSON is corrupt: {e}")))
}

/// A stored value this binary cannot read.
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::Backend(anyhow::anyhow!(what))
}

/// A hold as its columns keep it (commands' and runs' alike): `(approvals needed, deadline,
/// requester)`.
pub(super) fn hold_columns(hold: Option<&crate::approval::Hold>) -> (Option<i64>, Option<i64>, Option<String>) {
    match hold {
        Some(h) => (Some(i64::from(h.needed)), Some(h.deadline), Some(h.requester.clone())),
        None => (None, None, None),
    }
}
