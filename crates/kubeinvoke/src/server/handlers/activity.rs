//! Microsoft.Insights: the activity log as `az monitor activity-log list` reads it.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::activity::filter::EventFilter;
use crate::arm::ApiError;
use crate::arm::wire::ListResult;
use crate::resource::names::SubscriptionId;
use crate::server::AppState;
use crate::server::request::{RequestContext, encode, json};

const PAGE: usize = 200;

/// `GET /subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values?$filter=…`:
/// newest first, `nextLink` paging; each event as it was hashed into the chain.
pub(crate) async fn list(
    app: &AppState,
    ctx: &RequestContext,
    subscription: &SubscriptionId,
) -> Result<Response, ApiError> {
    let raw = ctx.query("$filter").ok_or_else(|| {
        ApiError::invalid("$filter", "'$filter' is required and must give a start: eventTimestamp ge <time>.")
    })?;
    let filter = EventFilter::parse(raw).map_err(|e| ApiError::invalid("$filter", e.0))?;
    let (_, before) = ctx.page(PAGE, PAGE)?;
    let mut events = app.store.activity().list_events(subscription.as_str(), &filter, before, PAGE + 1).await?;
    let next_link = (events.len() > PAGE).then(|| {
        events.truncate(PAGE);
        let last = events.last().expect("a full page").seq;
        format!("{}&$filter={}&$skipToken={last}", ctx.url(&ctx.path), encode(raw))
    });
    let value: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(&e.content).ok()).collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link }))
}
