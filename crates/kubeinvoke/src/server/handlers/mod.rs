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
            other => ApiError::internal(other),
        }
    }
}
