//! Event subscriptions in Event Grid's shape (`az eventgrid event-subscription create`): webhook
//! destinations that receive CloudEvents 1.0 for command accepted, started and finished, read
//! from the activity log (the durable outbox: a subscription's cursor moves only after a 2xx).

pub mod delivery;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The event types a subscription can filter on.
pub const EVENT_TYPES: [&str; 3] = [
    "Microsoft.ContainerService.CommandAccepted",
    "Microsoft.ContainerService.CommandStarted",
    "Microsoft.ContainerService.CommandFinished",
];

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// A CA trusted besides the system's roots (a private CA of the receivers).
    pub extra_ca: Option<PathBuf>,
    /// Plain http to loopback addresses (development only).
    pub allow_http_loopback: bool,
    /// The first retry's wait; each further one doubles it (up to a minute).
    pub retry_base: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { extra_ca: None, allow_http_loopback: false, retry_base: Duration::from_secs(1) }
    }
}

/// A refusal of a subscription body, naming the property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSubscription {
    pub property: &'static str,
    pub message: String,
}

fn invalid(property: &'static str, message: impl Into<String>) -> InvalidSubscription {
    InvalidSubscription { property, message: message.into() }
}

/// A subscription as checked at PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub endpoint: url_like::Endpoint,
    /// Empty: every type.
    pub included_types: Vec<String>,
    pub max_attempts: u32,
    pub ttl: Duration,
}

/// Endpoint URLs: only what delivery needs to know about them.
pub mod url_like {
    /// An endpoint URL with its scheme and host read out.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Endpoint {
        pub url: String,
        pub https: bool,
        pub host: String,
    }

    impl Endpoint {
        pub fn parse(url: &str) -> Option<Endpoint> {
            let (scheme, rest) = url.split_once("://")?;
            let https = match scheme.to_ascii_lowercase().as_str() {
                "https" => true,
                "http" => false,
                _ => return None,
            };
            let authority = rest.split(['/', '?', '#']).next()?;
            let host = match authority.rsplit_once('@').map_or(authority, |(_, h)| h) {
                h if h.starts_with('[') => h.split(']').next()?.trim_start_matches('[').to_string(),
                h => h.split(':').next()?.to_string(),
            };
            (!host.is_empty()).then(|| Endpoint { url: url.to_string(), https, host })
        }

        pub fn is_loopback(&self) -> bool {
            self.host.eq_ignore_ascii_case("localhost")
                || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }

        /// The URL without its query (Azure shows only the base; a query may hold a secret).
        pub fn base(&self) -> String {
            self.url.split('?').next().unwrap_or(&self.url).to_string()
        }
    }
}

impl SubscriptionSpec {
    /// Reads `properties` of a PUT body as az sends it.
    pub fn parse(properties: &Map<String, Value>, allow_http_loopback: bool) -> Result<Self, InvalidSubscription> {
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
        let url = destination.get("properties").and_then(|p| p.get("endpointUrl")).and_then(Value::as_str).ok_or_else(
            || invalid("properties.destination.properties.endpointUrl", "The webhook's endpointUrl is required."),
        )?;
        let endpoint = url_like::Endpoint::parse(url).ok_or_else(|| {
            invalid("properties.destination.properties.endpointUrl", format!("'{url}' is not an http(s) URL."))
        })?;
        let allowed = endpoint.https || (allow_http_loopback && endpoint.is_loopback());
        if !allowed {
            return Err(invalid(
                "properties.destination.properties.endpointUrl",
                "Webhook endpoints must be https (plain http only on loopback, and only with --event-allow-http-loopback).",
            ));
        }
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
    pub fn wants(&self, event_type: &str) -> bool {
        self.included_types.is_empty() || self.included_types.iter().any(|t| t.eq_ignore_ascii_case(event_type))
    }
}

/// The CloudEvent for an activity log event (its canonical content), if it is one subscribers
/// get: a command accepted, started or finished. Never logs, parameters or secrets.
pub fn cloud_event(content: &str) -> Option<(String, Value)> {
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
    fn webhooks_must_be_https_unless_loopback_is_allowed() {
        let spec = SubscriptionSpec::parse(&body("https://hooks.example/x?code=secret"), false).unwrap();
        assert_eq!(spec.endpoint.base(), "https://hooks.example/x");
        assert!(spec.wants("microsoft.containerservice.commandfinished") && !spec.wants(EVENT_TYPES[0]));
        let refused = SubscriptionSpec::parse(&body("http://127.0.0.1:9/x"), false).unwrap_err();
        assert_eq!(refused.property, "properties.destination.properties.endpointUrl");
        assert!(SubscriptionSpec::parse(&body("http://127.0.0.1:9/x"), true).is_ok());
        assert!(SubscriptionSpec::parse(&body("http://example.com/x"), true).is_err());
        assert!(SubscriptionSpec::parse(&body("http://[::1]:9/x"), true).is_ok());
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
