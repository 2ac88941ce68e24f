//! The front door: the headers ARM puts on every response and one log line per request, around
//! the ARM entry point for ARM paths and axum's router for the rest.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use tower::ServiceExt;

use super::AppState;
use super::entry::{self, RouteTemplate};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
const CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlation-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
const READS_LEFT: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-reads");
const WRITES_LEFT: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-writes");

/// There is no throttling to report; these are ARM's usual full budgets.
const READ_BUDGET: u32 = 11999;
const WRITE_BUDGET: u32 = 1199;

/// Every request's way in: the ARM headers and the log line around whatever answers it. ARM
/// paths (`/subscriptions/…`) go straight to [`entry::handle`] without axum's router, which
/// would reach it only as its fallback after matching every route (measured: 2.4k
/// instructions and three allocations of a result read's 60k); the rest go to the router.
#[derive(Clone)]
pub struct FrontDoor {
    app: Arc<AppState>,
    router: Router,
}

impl FrontDoor {
    /// `router` answers what is not an ARM path; its routes report their templates through
    /// [`report_matched_path`].
    pub fn new(app: Arc<AppState>, router: Router) -> Self {
        FrontDoor { app, router }
    }

    pub async fn answer(self, mut request: Request) -> Response {
        let started = Instant::now();
        let mut id_text = uuid::Uuid::encode_buffer();
        let request_id = &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_text);
        let correlation = request.headers().get(&CORRELATION_ID).cloned().unwrap_or_else(|| {
            let mut text = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
                .expect("uuid is a header value")
        });
        // Handlers (the activity log) see the same correlation id the answer carries.
        request.headers_mut().insert(CORRELATION_ID, correlation.clone());
        let client_request_id = request.headers().get(&CLIENT_REQUEST_ID).cloned();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let path = uri.path();
        let is_arm = path.get(1..14).is_some_and(|p| p.eq_ignore_ascii_case("subscriptions"));

        let mut response = if is_arm {
            entry::handle(State(self.app), request).await
        } else {
            self.router.oneshot(request).await.unwrap_or_else(|never| match never {})
        };

        let template = response.extensions().get::<RouteTemplate>().copied();
        let matched = response.extensions_mut().remove::<MatchedPath>();
        let route = match (&template, &matched) {
            (Some(template), _) => template.0,
            (None, Some(matched)) => matched.as_str(),
            (None, None) => "unmatched",
        };
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID, HeaderValue::from_str(request_id).expect("uuid is a header value"));
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
        let correlation_id = correlation.to_str().unwrap_or_default();
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        RequestMetrics::record(route, &method, status, elapsed);
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
        response.headers_mut().insert(CORRELATION_ID, correlation);
        response
    }
}

/// A route layer of the router: axum knows which route matched only inside it, and the front
/// door's log line and metrics name the route, so the template rides out on the response.
pub(super) async fn report_matched_path(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// The request counter and duration histogram per route, method and status, looked up once
/// instead of building their labelled keys on every request.
#[derive(Default)]
struct RequestMetrics {
    routes: HashMap<String, RouteMetrics, foldhash::fast::RandomState>,
}

struct RouteMetrics {
    duration: Histogram,
    requests: HashMap<(Method, u16), Counter, foldhash::fast::RandomState>,
}

impl RequestMetrics {
    fn record(route: &str, method: &Method, status: u16, elapsed: std::time::Duration) {
        static ALL: LazyLock<Mutex<RequestMetrics>> = LazyLock::new(Mutex::default);
        let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
        if !all.routes.contains_key(route) {
            let duration =
                metrics::histogram!("kubeinvoke_http_request_duration_seconds", "route" => route.to_string());
            all.routes.insert(route.to_string(), RouteMetrics { duration, requests: HashMap::default() });
        }
        let metrics = all.routes.get_mut(route).expect("inserted above");
        metrics.duration.record(elapsed.as_secs_f64());
        metrics
            .requests
            .entry((method.clone(), status))
            .or_insert_with(|| {
                metrics::counter!("kubeinvoke_http_requests_total", "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string())
            })
            .increment(1);
    }
}
