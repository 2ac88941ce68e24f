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

pub async fn arm_headers(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation =
        request.headers().get(&CORRELATION_ID).cloned().unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("uuid is a header value")
        });
    // Handlers (the activity log) see the same correlation id the answer carries.
    request.headers_mut().insert(CORRELATION_ID, correlation.clone());
    let client_request_id = request.headers().get(&CLIENT_REQUEST_ID).cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = route_template(&request);
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
    let correlation_id = headers.get(&CORRELATION_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("kubeinvoke_http_requests_total", "route" => route.clone(), "method" => method.to_string(), "status" => status.to_string()).increment(1);
    metrics::histogram!("kubeinvoke_http_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(
        %method,
        route,
        path,
        status,
        elapsed_ms = elapsed.as_millis() as u64,
        request_id,
        correlation_id,
        "request"
    );
    response
}

/// The route template of a request (never its names), to keep metric labels bounded.
fn route_template(request: &Request) -> String {
    if let Some(parsed) = crate::arm::path::parse(request.uri().path()) {
        if let Ok(route) = parsed.route {
            return route.template().to_string();
        }
        return "invalid".to_string();
    }
    match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(matched) => matched.as_str().to_string(),
        None => "unmatched".to_string(),
    }
}
