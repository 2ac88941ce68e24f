//! What handlers know about a request: its base URL, path, query and body, read safely.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::arm::ApiError;

pub struct RequestContext {
    /// `scheme://host[:port]` as the client reached us, for absolute `Location` and `nextLink`.
    pub base_url: String,
    pub path: String,
    query: Vec<(String, String)>,
    pub headers: HeaderMap,
}

impl RequestContext {
    pub fn new(app: &AppState, parts: &Parts) -> Self {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| app.listen_authority.clone());
        let scheme = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| matches!(*p, "http" | "https"))
            .unwrap_or(app.scheme);
        let query = parts.uri.query().map(query_pairs).unwrap_or_default();
        RequestContext {
            base_url: format!("{scheme}://{host}"),
            path: parts.uri.path().to_string(),
            query,
            headers: parts.headers.clone(),
        }
    }

    /// A query parameter; names compare case-insensitively, as ARM's do.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn api_version(&self) -> Option<&str> {
        self.query("api-version")
    }

    /// An absolute URL on this server with the request's api-version.
    pub fn url(&self, path: &str) -> String {
        let version = self.api_version().unwrap_or_default();
        format!("{}{}?api-version={}", self.base_url, path, encode(version))
    }
}

pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Reads a JSON body within `limit` bytes; every failure is a CloudError, never a 500.
pub async fn json_body<T: DeserializeOwned>(body: Body, headers: &HeaderMap, limit: usize) -> Result<T, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::BodyTooLarge { limit })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequestContent("the request body is empty; a JSON object is required".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidRequestContent(e.to_string()))
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}
