//! One module per resource family; each handler takes typed input and returns a response.

pub(super) mod activity;
pub(super) mod approvals;
pub(super) mod authorization;
pub(super) mod clusters;
pub(super) mod commands;
pub(super) mod eventgrid;
pub(super) mod graph;
pub(super) mod groups;
pub(super) mod history;
pub(super) mod meta;
pub(super) mod oauth;
pub(super) mod providers;
pub(super) mod run_commands;
pub(super) mod runs;
pub(super) mod saved;

use crate::arm::ApiError;
use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "the store is unavailable");
                ApiError::StoreUnavailable { retry_after: 5 }
            }
            StoreError::Full(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "the store's disk is full: writes are refused until space is freed"
                );
                ApiError::StorageFull { retry_after: 30 }
            }
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn a_full_disk_is_a_507_that_says_so_and_when_to_retry() {
        // SQLite's own refusal when the data directory's filesystem is full.
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let stored = crate::store::sqlite_error_for_tests(full);
        assert!(matches!(stored, StoreError::Full(_)), "{stored:?}");
        let answer = ApiError::from(stored);
        assert_eq!((answer.status().as_u16(), answer.code()), (507, "InsufficientStorage"));
        assert!(answer.to_string().contains("out of space"), "{answer}");
        let response = answer.into_response();
        assert_eq!(response.headers()["retry-after"], "30");
    }
}
