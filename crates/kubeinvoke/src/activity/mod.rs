//! The activity log: every write through the API and every command's life, as one append-only,
//! hash-chained sequence of events in Azure Monitor's shape (`az monitor activity-log list`).
//!
//! Each event's `hash` is SHA-256 over its predecessor's hash and its own canonical content, so
//! an event changed, removed or reordered in the database breaks the chain at that event
//! ([`chain::Walk`]). Command events are written by `services::activity_logger` from the command rows
//! themselves (which record what was logged), so a crash between a state change and its event
//! loses nothing: the next pass writes it.

pub(crate) mod chain;
pub(crate) mod filter;

use serde_json::{Map, Value, json};

use crate::time::rfc3339;

/// An event to append; the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: String,
    pub time: i64,
    /// `Microsoft.ContainerService/managedClusters/runcommand/action`, `…/write`, `…/delete`.
    pub operation: String,
    /// `Accepted`, `Started`, `Succeeded`, `Failed`, `Canceled`.
    pub status: String,
    /// Why a refusal happened (`Forbidden`, `Unauthorized`, `TooManyRequests`), or empty.
    pub sub_status: String,
    /// Who: an app id, or empty when the caller is unknown (no valid token).
    pub caller: String,
    pub correlation_id: String,
    /// The resource the event is about (an ARM id); the subscription and group are taken from it.
    pub resource_id: String,
    /// Strings only (Azure's `properties` is a map of strings).
    pub properties: Map<String, Value>,
}

/// An event as stored: its content, place and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEvent {
    pub seq: i64,
    pub event_id: String,
    pub time: i64,
    /// The canonical JSON the hash covers.
    pub content: String,
    pub prev_hash: String,
    pub hash: String,
    /// The columns the API filters on, as stored beside the content.
    pub columns: FilterColumns,
}

/// The columns the store keeps beside an event for the API's filters (`$filter` on caller,
/// status, resource, time). Each is a function of the hashed content: written from it at append
/// and recomputed from it by `audit verify`, so an edited column is a changed event and an
/// event cannot be hidden from a filter without breaking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterColumns {
    pub event_id: String,
    pub time: i64,
    pub subscription_key: String,
    pub group_key: String,
    pub resource_key: String,
    pub provider_key: String,
    pub caller: String,
    pub correlation_id: String,
    pub status: String,
}

impl FilterColumns {
    /// The columns of a canonical content ([`NewEvent::content`]); `None` if it is not one.
    pub fn of_content(content: &str) -> Option<Self> {
        let event: Value = serde_json::from_str(content).ok()?;
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_string);
        let timestamp = text("eventTimestamp")?;
        let time = time::OffsetDateTime::parse(&timestamp, &time::format_description::well_known::Rfc3339).ok()?;
        let resource_id = text("resourceId")?;
        let (subscription, group, _, _) = parts_of(&resource_id);
        let resource_key = resource_id.trim_end_matches('/').to_lowercase();
        let provider_key = resource_key
            .split('/')
            .skip_while(|s| *s != "providers")
            .nth(1)
            .unwrap_or("microsoft.resources")
            .to_string();
        Some(FilterColumns {
            event_id: text("eventDataId")?,
            time: i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()?,
            subscription_key: subscription.to_lowercase(),
            group_key: group.to_lowercase(),
            resource_key,
            provider_key,
            caller: text("caller")?,
            correlation_id: text("correlationId")?,
            status: event.get("status")?.get("value")?.as_str()?.to_string(),
        })
    }

    /// The first column of `stored` that differs from these (derived) ones, by its name.
    pub fn first_difference(&self, stored: &FilterColumns) -> Option<&'static str> {
        let pairs: [(&'static str, bool); 9] = [
            ("event_id", self.event_id == stored.event_id),
            ("event_time", self.time == stored.time),
            ("subscription_key", self.subscription_key == stored.subscription_key),
            ("group_key", self.group_key == stored.group_key),
            ("resource_key", self.resource_key == stored.resource_key),
            ("provider_key", self.provider_key == stored.provider_key),
            ("caller", self.caller == stored.caller),
            ("correlation_id", self.correlation_id == stored.correlation_id),
            ("status", self.status == stored.status),
        ];
        pairs.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
    }
}

impl NewEvent {
    /// The canonical content: a JSON object with sorted keys (serde_json's default map), in
    /// Azure's field names, so it is served as it was hashed.
    pub fn content(&self) -> String {
        let (subscription, group, provider, kind) = parts_of(&self.resource_id);
        let mut event = json!({
            "eventDataId": self.event_id,
            "eventTimestamp": rfc3339(self.time),
            "submissionTimestamp": rfc3339(self.time),
            "operationName": {"value": self.operation, "localizedValue": self.operation},
            "status": {"value": self.status, "localizedValue": self.status},
            "subStatus": {"value": self.sub_status, "localizedValue": self.sub_status},
            "caller": self.caller,
            "correlationId": self.correlation_id,
            "resourceId": self.resource_id,
            "subscriptionId": subscription,
            "resourceGroupName": group,
            "resourceProviderName": {"value": provider, "localizedValue": provider},
            "resourceType": {"value": kind, "localizedValue": kind},
            "level": if self.status == "Failed" { "Error" } else { "Informational" },
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "properties": self.properties,
        });
        event["id"] = Value::String(format!("{}/events/{}/ticks/{}", self.resource_id, self.event_id, self.time));
        event.to_string()
    }
}

/// `(subscription, group, provider, type)` of an ARM id; empty where it has none.
fn parts_of(resource_id: &str) -> (String, String, String, String) {
    let segments: Vec<&str> = resource_id.split('/').filter(|s| !s.is_empty()).collect();
    let after = |word: &str| {
        segments.windows(2).find(|w| w[0].eq_ignore_ascii_case(word)).map(|w| w[1].to_string()).unwrap_or_default()
    };
    let provider = after("providers");
    let kind = segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("providers"))
        .and_then(|at| segments.get(at + 2))
        .map(|t| format!("{provider}/{t}"))
        .unwrap_or_else(|| {
            if segments.len() >= 4 {
                "Microsoft.Resources/resourceGroups".into()
            } else {
                "Microsoft.Resources/subscriptions".into()
            }
        });
    (after("subscriptions"), after("resourceGroups"), provider, kind)
}

/// `appId (objectId)` → `appId`: the caller as the activity log names it.
pub(crate) fn caller_of(submitted_by: &str) -> String {
    submitted_by.split(" (").next().unwrap_or(submitted_by).to_string()
}

/// Properties are strings in Azure's shape.
pub(crate) fn string_properties(pairs: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_canonical_and_in_azures_shape() {
        let event = NewEvent {
            event_id: "e1".into(),
            time: 0,
            operation: "Microsoft.ContainerService/managedClusters/runcommand/action".into(),
            status: "Succeeded".into(),
            sub_status: String::new(),
            caller: "app".into(),
            correlation_id: "c".into(),
            resource_id: "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/c1"
                .into(),
            properties: string_properties([("exitCode".to_string(), "0".to_string())]),
        };
        let content = event.content();
        assert_eq!(content, event.content(), "the same every time");
        let parsed: Value = serde_json::from_str(&content).unwrap();
        assert_eq!(parsed["resourceGroupName"], "RG");
        assert_eq!(parsed["resourceType"]["value"], "Microsoft.ContainerService/managedClusters");
        assert_eq!(parsed["operationName"]["value"], event.operation);
        assert!(content.find("\"caller\"").unwrap() < content.find("\"status\"").unwrap(), "keys are sorted");
        let columns = FilterColumns::of_content(&content).unwrap();
        assert_eq!((columns.subscription_key.as_str(), columns.group_key.as_str()), ("s", "rg"));
        assert_eq!(caller_of("app (oid)"), "app");
    }
}
