//! The headers ARM puts on every response, and one log line per request.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
const CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlation-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
const READS_LEFT: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-reads");
const WRITES_LEFT: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-writes");

/// There is no throttling to report; these are ARM's usual full budgets.
const READ_BUDGET: u32 = 11999;
const WRITE_BUDGET: u32 = 1199;

pub async fn arm_headers(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation =
        request.headers().get(&CORRELATION_ID).cloned().unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("uuid is a header value")
        });
    let client_request_id = request.headers().get(&CLIENT_REQUEST_ID).cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let is_arm = path.len() > 1 && path.as_bytes()[1..].to_ascii_lowercase().starts_with(b"subscriptions");

    let mut response = next.run(request).await;

    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, HeaderValue::from_str(&request_id).expect("uuid is a header value"));
    headers.insert(CORRELATION_ID, correlation);
    if let Some(id) = client_request_id {
        headers.insert(CLIENT_REQUEST_ID, id);
    }
    if is_arm {
        if method == Method::GET || method == Method::HEAD {
            headers.insert(READS_LEFT, HeaderValue::from(READ_BUDGET));
        } else {
            headers.insert(WRITES_LEFT, HeaderValue::from(WRITE_BUDGET));
        }
    }
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        request_id,
        "request"
    );
    response
}
