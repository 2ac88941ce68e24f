//! One module per resource family; each handler takes typed input and returns a response.

pub mod clusters;
pub mod commands;
pub mod groups;
pub mod meta;

use crate::arm::ApiError;
use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}
