//! Event subscriptions in Event Grid's shape (`az eventgrid event-subscription create`): webhook
//! destinations that receive CloudEvents 1.0 for command accepted, started and finished, and for
//! approvals requested, given and refused (so a chat or paging webhook can call approvers), read
//! from the activity log (the durable outbox: a subscription's cursor moves only after a 2xx).

pub(crate) mod delivery;
pub(crate) mod endpoint;
pub(crate) mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use endpoint::{AddressPolicy, Endpoint};

/// The event types a subscription can filter on.
pub(crate) const EVENT_TYPES: [&str; 6] = [
    "Microsoft.ContainerService.CommandAccepted",
    "Microsoft.ContainerService.CommandStarted",
    "Microsoft.ContainerService.CommandFinished",
    "Microsoft.ContainerService.CommandApprovalRequested",
    "Microsoft.ContainerService.CommandApproved",
    "Microsoft.ContainerService.CommandRejected",
];

/// The operation of an approver's decision in the activity log.
const DECISION_OPERATION: &str = "/commandResults/approve/action";

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
/// get: a command accepted, started or finished, its approval requested, or an approver's
/// decision. Never logs, parameters or secrets.
pub(crate) fn cloud_event(content: &str) -> Option<(String, Value)> {
    let event: Value = serde_json::from_str(content).ok()?;
    let operation = event["operationName"]["value"].as_str()?;
    let status = event["status"]["value"].as_str()?;
    let properties = &event["properties"];
    let (kind, state) = if operation.ends_with("/runcommand/action") || operation.ends_with("/runSavedCommand/action") {
        match status {
            "Accepted" => (EVENT_TYPES[0], status),
            "Started" => (EVENT_TYPES[1], "Running"),
            "Succeeded" | "Failed" | "Canceled" => (EVENT_TYPES[2], status),
            "ApprovalRequested" => (EVENT_TYPES[3], "PendingApproval"),
            _ => return None,
        }
    } else if operation.ends_with(DECISION_OPERATION) {
        match (status, properties["released"].as_str()) {
            ("Approved", Some("true")) => (EVENT_TYPES[4], "Accepted"),
            ("Approved", _) => (EVENT_TYPES[4], "PendingApproval"),
            ("Rejected", _) => (EVENT_TYPES[5], "Canceled"),
            _ => return None,
        }
    } else {
        return None;
    };
    let command_id = properties["commandId"].as_str()?;
    let cluster = event["resourceId"].as_str()?;
    let mut data = json!({
        "commandId": command_id,
        "clusterId": cluster,
        "state": state,
        "caller": event["caller"],
    });
    for field in ["exitCode", "reason", "durationMs", "approvals", "approvalsNeeded"] {
        if let Some(value) = properties[field].as_str() {
            data[field] = match field {
                "exitCode" | "durationMs" | "approvals" | "approvalsNeeded" => {
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

    #[test]
    fn approvals_become_cloud_events_naming_the_approver_and_the_state() {
        let event = |operation: &str, status: &str, properties: Vec<(&str, &str)>| NewEvent {
            event_id: "e2".into(),
            time: 0,
            operation: operation.into(),
            status: status.into(),
            sub_status: String::new(),
            caller: "approver".into(),
            correlation_id: "c1".into(),
            resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k"
                .into(),
            properties: string_properties(properties.into_iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        };
        let run = "Microsoft.ContainerService/managedClusters/runcommand/action";
        let approve = "Microsoft.ContainerService/managedClusters/commandResults/approve/action";
        let asked = event(run, "ApprovalRequested", vec![("commandId", "c1"), ("approvalsNeeded", "2")]);
        let (kind, cloud) = cloud_event(&asked.content()).unwrap();
        assert_eq!(
            (kind.as_str(), &cloud["data"]["state"]),
            ("Microsoft.ContainerService.CommandApprovalRequested", &json!("PendingApproval"))
        );
        assert_eq!(cloud["data"]["approvalsNeeded"], 2);
        let counted = event(approve, "Approved", vec![("commandId", "c1"), ("released", "false"), ("reason", "ok")]);
        let (kind, cloud) = cloud_event(&counted.content()).unwrap();
        assert_eq!(
            (kind.as_str(), &cloud["data"]["state"]),
            ("Microsoft.ContainerService.CommandApproved", &json!("PendingApproval"))
        );
        assert_eq!(
            (cloud["data"]["caller"].as_str(), cloud["data"]["reason"].as_str()),
            (Some("approver"), Some("ok"))
        );
        let released = event(approve, "Approved", vec![("commandId", "c1"), ("released", "true")]);
        assert_eq!(cloud_event(&released.content()).unwrap().1["data"]["state"], "Accepted");
        let rejected = event(approve, "Rejected", vec![("commandId", "c1"), ("released", "false")]);
        assert_eq!(cloud_event(&rejected.content()).unwrap().0, "Microsoft.ContainerService.CommandRejected");
    }
}
