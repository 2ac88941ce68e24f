//! What handlers know about a request: its base URL, path, query and body, read safely.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::arm::ApiError;

const FORWARDED_PROTO: axum::http::HeaderName = axum::http::HeaderName::from_static("x-forwarded-proto");

pub(super) struct RequestContext {
    /// `scheme://host[:port]` as the client reached us, for absolute `Location` and `nextLink`.
    pub base_url: String,
    pub path: String,
    query: Vec<(String, String)>,
    pub headers: HeaderMap,
}

impl RequestContext {
    /// The request's context; its headers are taken from `parts` (not copied).
    pub(super) fn new(app: &AppState, parts: &mut Parts) -> Self {
        let authority;
        let host = match parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => host,
            None => {
                authority = parts.uri.authority().map_or_else(|| app.listen_authority.clone(), |a| a.to_string());
                &authority
            }
        };
        let scheme = parts
            .headers
            .get(&FORWARDED_PROTO)
            .and_then(|h| h.to_str().ok())
            .filter(|p| matches!(*p, "http" | "https"))
            .unwrap_or(app.scheme);
        let query = parts.uri.query().map(query_pairs).unwrap_or_default();
        RequestContext {
            base_url: [scheme, "://", host].concat(),
            path: parts.uri.path().to_string(),
            query,
            headers: std::mem::take(&mut parts.headers),
        }
    }

    /// A query parameter; names compare case-insensitively, as ARM's do.
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `$top` (1 to `max`, `default` when absent) and `$skipToken` (a position) of a list.
    pub(super) fn page(&self, default: usize, max: usize) -> Result<(usize, Option<i64>), ApiError> {
        let top = match self.query("$top") {
            None => default,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::invalid("$top", format!("'$top' must be a number from 1 to {max}.")))?,
        };
        let before =
            match self.query("$skipToken") {
                None => None,
                Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                    ApiError::invalid("$skipToken", format!("The continuation token '{raw}' is invalid."))
                })?),
            };
        Ok((top, before))
    }

    pub(super) fn api_version(&self) -> Option<&str> {
        self.query("api-version")
    }

    /// An absolute URL on this server with the request's api-version.
    pub(super) fn url(&self, path: &str) -> String {
        let version = self.api_version().unwrap_or_default();
        format!("{}{}?api-version={}", self.base_url, path, encode(version))
    }
}

pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
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
    if !s.contains(['%', '+']) {
        return s.to_string();
    }
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// How much of an oversized body is read and thrown away so that the 413 reaches the client, and
/// for how long: clients such as Python `requests` write the whole body before they read a
/// byte, and a connection closed under them reports a broken pipe instead of our CloudError.
const DISCARD_BOUND: u64 = 1 << 30;
const DISCARD_TIME: Duration = Duration::from_secs(60);

/// Reads a JSON body within `limit` bytes; every failure is a CloudError, never a 500.
pub(super) async fn json_body<T: DeserializeOwned>(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<T, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        discard(body).await;
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidRequestContent(format!("reading the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            discard_stream(stream).await;
            return Err(ApiError::BodyTooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequestContent("the request body is empty; a JSON object is required".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidRequestContent(e.to_string()))
}

/// Reads and drops the rest of a body, up to [`DISCARD_BOUND`] bytes or [`DISCARD_TIME`]; a
/// larger or slower one is cut off (the 413 then carries `Connection: close`).
async fn discard(body: Body) {
    discard_stream(body.into_data_stream()).await;
}

async fn discard_stream(mut stream: axum::body::BodyDataStream) {
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DISCARD_BOUND {
                break;
            }
        }
    })
    .await;
}

/// A JSON response with the given status.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A JSON body serialised already.
pub(super) fn json_bytes(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    response
}
