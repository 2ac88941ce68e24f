//! One module per resource family; each handler takes typed input and returns a response.

pub mod activity;
pub mod authorization;
pub mod clusters;
pub mod commands;
pub mod eventgrid;
pub mod graph;
pub mod groups;
pub mod history;
pub mod meta;
pub mod oauth;
pub mod runs;
pub mod saved;

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
