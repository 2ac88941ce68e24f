//! Who is calling. Until the identity issue lands, any bearer token is accepted; this is the
//! one place that decides, so a real validator replaces only this module.

use axum::http::{HeaderMap, header};

use crate::arm::ApiError;

/// The authenticated caller; it gains an identity (object id, app id) when tokens are validated.
#[derive(Debug, Clone)]
pub struct Principal;

/// Accepts a request that carries `Authorization: Bearer <token>`.
pub fn authenticate(headers: &HeaderMap, authorization_uri: &str) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::AuthenticationMissing { authorization_uri: authorization_uri.to_string() });
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken("the Authorization header is not text".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::AuthenticationMissing { authorization_uri: authorization_uri.to_string() });
    }
    if token.trim().is_empty() {
        return Err(ApiError::InvalidToken("the bearer token is empty".into()));
    }
    Ok(Principal)
}
