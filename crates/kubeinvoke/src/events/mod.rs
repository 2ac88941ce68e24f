//! Event subscriptions in Event Grid's shape (`az eventgrid event-subscription create`): webhook
//! destinations that receive CloudEvents 1.0 for command accepted, started and finished, read
//! from the activity log (the durable outbox: a subscription's cursor moves only after a 2xx).

pub(crate) mod delivery;
pub(crate) mod endpoint;
pub(crate) mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use endpoint::{AddressPolicy, Endpoint};

/// The event types a subscription can filter on.
pub(crate) const EVENT_TYPES: [&str; 3] = [
    "Microsoft.ContainerService.CommandAccepted",
    "Microsoft.ContainerService.CommandStarted",
    "Microsoft.ContainerService.CommandFinished",
];

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// A CA trusted besides the system's roots (a private CA of the receivers).
    pub extra_ca: Option<PathBuf>,
    /// Which addresses webhooks may reach (`--event-allow-http-loopback`,
    /// `--event-allow-private-networks`); public ones only by default.
    pub addresses: AddressPolicy,
    /// The first retry's wait; each further one doubles it (up to a minute).
    pub retry_base: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { extra_ca: None, addresses: AddressPolicy::default(), retry_base: Duration::from_secs(1) }
    }
}

const ENDPOINT_PROPERTY: &str = "properties.destination.properties.endpointUrl";

/// A refusal of a subscription body, naming the property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct InvalidSubscription {
    pub property: &'static str,
    pub message: String,
}

fn invalid(property: &'static str, message: impl Into<String>) -> InvalidSubscription {
    InvalidSubscription { property, message: message.into() }
}

/// A subscription as checked at PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionSpec {
    pub endpoint: Endpoint,
    /// Empty: every type.
    pub included_types: Vec<String>,
    pub max_attempts: u32,
    pub ttl: Duration,
}

impl SubscriptionSpec {
    /// Reads `properties` of a PUT body as az sends it; the endpoint must be one `addresses`
    /// allows as far as the URL shows (a name is checked again, resolved, at every connection).
    pub(crate) fn parse(
        properties: &Map<String, Value>,
        addresses: &AddressPolicy,
    ) -> Result<Self, InvalidSubscription> {
        let spec = Self::parse_stored(properties)?;
        addresses.check(&spec.endpoint).map_err(|why| invalid(ENDPOINT_PROPERTY, why))?;
        Ok(spec)
    }

    /// Reads a stored subscription: its endpoint is checked by the webhook client at each call.
    pub(crate) fn parse_stored(properties: &Map<String, Value>) -> Result<Self, InvalidSubscription> {
        let destination = properties.get("destination").and_then(Value::as_object).ok_or_else(|| {
            invalid("properties.destination", "'properties.destination' is required: a WebHook endpoint.")
        })?;
        let kind = destination.get("endpointType").and_then(Value::as_str).unwrap_or_default();
        if !kind.eq_ignore_ascii_case("WebHook") {
            return Err(invalid(
                "properties.destination.endpointType",
                format!("Only WebHook destinations are supported (got '{kind}')."),
            ));
        }
        let url = destination
            .get("properties")
            .and_then(|p| p.get("endpointUrl"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(ENDPOINT_PROPERTY, "The webhook's endpointUrl is required."))?;
        let endpoint = Endpoint::parse(url).ok_or_else(|| {
            invalid(ENDPOINT_PROPERTY, "The endpointUrl is not an http(s) URL with a host (and without user info).")
        })?;
        let schema = properties.get("eventDeliverySchema").and_then(Value::as_str).unwrap_or("CloudEventSchemaV1_0");
        if !schema.eq_ignore_ascii_case("CloudEventSchemaV1_0") {
            return Err(invalid(
                "properties.eventDeliverySchema",
                format!(
                    "Events are delivered as CloudEvents 1.0 only: use --event-delivery-schema cloudeventschemav1_0 (got '{schema}')."
                ),
            ));
        }
        let included_types: Vec<String> = properties
            .get("filter")
            .and_then(|f| f.get("includedEventTypes"))
            .and_then(Value::as_array)
            .map(|types| types.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        if let Some(unknown) = included_types.iter().find(|t| !EVENT_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t))) {
            return Err(invalid(
                "properties.filter.includedEventTypes",
                format!("Unknown event type '{unknown}'; the types are {}.", EVENT_TYPES.join(", ")),
            ));
        }
        let retry = properties.get("retryPolicy");
        let max_attempts = retry.and_then(|r| r.get("maxDeliveryAttempts")).and_then(Value::as_u64).unwrap_or(30);
        let ttl_minutes = retry.and_then(|r| r.get("eventTimeToLiveInMinutes")).and_then(Value::as_u64).unwrap_or(1440);
        if !(1..=30).contains(&max_attempts) || !(1..=1440).contains(&ttl_minutes) {
            return Err(invalid(
                "properties.retryPolicy",
                "maxDeliveryAttempts must be 1-30 and eventTimeToLiveInMinutes 1-1440.",
            ));
        }
        Ok(SubscriptionSpec {
            endpoint,
            included_types,
            max_attempts: max_attempts as u32,
            ttl: Duration::from_secs(ttl_minutes * 60),
        })
    }

    /// Whether events of this type go to the subscription.
    pub(crate) fn wants(&self, event_type: &str) -> bool {
        self.included_types.is_empty() || self.included_types.iter().any(|t| t.eq_ignore_ascii_case(event_type))
    }
}

/// The CloudEvent for an activity log event (its canonical content), if it is one subscribers
/// get: a command accepted, started or finished. Never logs, parameters or secrets.
pub(crate) fn cloud_event(content: &str) -> Option<(String, Value)> {
    let event: Value = serde_json::from_str(content).ok()?;
    let operation = event["operationName"]["value"].as_str()?;
    if !operation.ends_with("/runcommand/action") && !operation.ends_with("/runSavedCommand/action") {
        return None;
    }
    let status = event["status"]["value"].as_str()?;
    let kind = match status {
        "Accepted" => EVENT_TYPES[0],
        "Started" => EVENT_TYPES[1],
        "Succeeded" | "Failed" | "Canceled" => EVENT_TYPES[2],
        _ => return None,
    };
    let properties = &event["properties"];
    let command_id = properties["commandId"].as_str()?;
    let cluster = event["resourceId"].as_str()?;
    let mut data = json!({
        "commandId": command_id,
        "clusterId": cluster,
        "state": if kind == EVENT_TYPES[1] { "Running" } else { status },
        "caller": event["caller"],
    });
    for (field, name) in [("exitCode", "exitCode"), ("reason", "reason"), ("durationMs", "durationMs")] {
        if let Some(value) = properties[field].as_str() {
            data[name] = match field {
                "exitCode" | "durationMs" => {
                    value.parse::<i64>().map(Value::from).unwrap_or(Value::String(value.into()))
                }
                _ => Value::String(value.into()),
            };
        }
    }
    let cloud = json!({
        "specversion": "1.0",
        "type": kind,
        "source": cluster,
        "subject": format!("commandResults/{command_id}"),
        "id": event["eventDataId"],
        "time": event["eventTimestamp"],
        "datacontenttype": "application/json",
        "data": data,
    });
    Some((kind.to_string(), cloud))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{NewEvent, string_properties};

    fn body(url: &str) -> Map<String, Value> {
        json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
               "eventDeliverySchema": "CloudEventSchemaV1_0",
               "filter": {"includedEventTypes": ["Microsoft.ContainerService.CommandFinished"]}})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn webhooks_must_be_https_to_public_addresses_unless_allowed() {
        let public = AddressPolicy::default();
        let loopback = AddressPolicy { allow_loopback: true, allow_private: false };
        let spec = SubscriptionSpec::parse(&body("https://hooks.example/x?code=secret"), &public).unwrap();
        assert_eq!(spec.endpoint.base(), "https://hooks.example/x");
        for url in [
            "http://127.0.0.1:9/x",
            "https://127.0.0.1:9/x",
            "https://10.0.0.8/x",
            "https://[::1]:9/x",
            "http://127.0.0.1:9\\@hooks.example/",
        ] {
            let refused = SubscriptionSpec::parse(&body(url), &public).unwrap_err();
            assert_eq!(refused.property, ENDPOINT_PROPERTY, "{url}");
        }
        assert!(SubscriptionSpec::parse(&body("http://127.0.0.1:9/x"), &loopback).is_ok());
        assert!(SubscriptionSpec::parse(&body("http://example.com/x"), &loopback).is_err());
        assert!(SubscriptionSpec::parse(&body("http://[::1]:9/x"), &loopback).is_ok());
        assert!(SubscriptionSpec::parse(&body("https://169.254.169.254/x"), &loopback).is_err());
    }

    #[test]
    fn command_events_become_cloud_events_without_their_command_text() {
        let event = NewEvent {
            event_id: "e1".into(),
            time: 0,
            operation: "Microsoft.ContainerService/managedClusters/runcommand/action".into(),
            status: "Failed".into(),
            sub_status: String::new(),
            caller: "app".into(),
            correlation_id: "c1".into(),
            resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k"
                .into(),
            properties: string_properties([
                ("commandId".to_string(), "c1".to_string()),
                ("reason".to_string(), "Timeout".to_string()),
                ("command".to_string(), "echo hidden".to_string()),
            ]),
        };
        let (kind, cloud) = cloud_event(&event.content()).unwrap();
        assert_eq!(kind, "Microsoft.ContainerService.CommandFinished");
        assert_eq!(cloud["id"], "e1");
        assert_eq!(cloud["data"]["reason"], "Timeout");
        assert!(!cloud.to_string().contains("echo hidden"));
    }
}
