//! What the activity log records of API requests: every successful write (commands themselves are
//! logged from their rows by `services::activity_logger`), and every refusal for a missing or bad token
//! (401), missing rights (403) or a full queue (429), with the caller when known.

use axum::http::{Method, StatusCode};

use super::permissions;
use super::request::RequestContext;
use crate::activity::{NewEvent, string_properties};
use crate::arm::path::{self, ClusterAction, Route};
use crate::time::now_millis;

const CORRELATION_HEADER: &str = "x-ms-correlation-request-id";

/// The event a finished request leaves in the log, if any.
pub(super) fn event_for(
    ctx: &RequestContext,
    method: &Method,
    caller: Option<&str>,
    status: StatusCode,
) -> Option<NewEvent> {
    // Reads that succeed (most requests) leave nothing: decided before anything is parsed.
    let refused = matches!(status.as_u16(), 401 | 403 | 429);
    let write = status.is_success() && !matches!(*method, Method::GET | Method::HEAD);
    if !(refused || write) {
        return None;
    }
    let route = path::parse(&ctx.path).and_then(|p| p.route.ok());
    // Accepted commands are logged from the command rows, with their whole life; decisions on
    // held commands by their handler, naming the decision.
    if write
        && matches!(
            route,
            Some(
                Route::ClusterAction(_, ClusterAction::RunCommand | ClusterAction::RunSavedCommand)
                    | Route::DecideCommand(..)
                    | Route::DecideCommandRun(..)
            )
        )
    {
        return None;
    }
    let operation = route
        .as_ref()
        .and_then(|r| permissions::required(r, method).map(|p| p.action.to_string()))
        .or_else(|| route.as_ref().map(|r| format!("{} {method}", r.template())))
        .unwrap_or_else(|| format!("{method} {}", ctx.path));
    let sub_status = match status.as_u16() {
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "TooManyRequests",
        _ => "",
    };
    let correlation = ctx.headers.get(CORRELATION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    Some(NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        time: now_millis(),
        operation,
        status: if refused { "Failed".into() } else { "Succeeded".into() },
        sub_status: sub_status.into(),
        caller: caller.unwrap_or_default().to_string(),
        correlation_id: correlation.to_string(),
        resource_id: ctx.path.trim_end_matches('/').to_string(),
        properties: string_properties([
            ("httpMethod".to_string(), method.to_string()),
            ("statusCode".to_string(), status.as_u16().to_string()),
        ]),
    })
}
