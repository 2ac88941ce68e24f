//! Resource providers and locations, as ARM serves them to clients that check a provider's
//! registration before they create anything (`az provider show`, Terraform's providers): every
//! provider kubeinvoke serves is `Registered` in every subscription, with its resource types,
//! their api-versions and the locations they exist in.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json as json_value};

use crate::arm::ApiError;
use crate::arm::api_version::KNOWN_CONTAINER_SERVICE_VERSIONS;
use crate::resource::location::REGIONS;
use crate::resource::names::SubscriptionId;
use crate::server::request::json;

/// The api-versions of the providers other than Microsoft.ContainerService (which takes any from
/// its first with runCommand; these are what current clients send).
const OTHER_VERSIONS: &[&str] = &["2024-03-01", "2022-12-01", "2022-04-01", "2021-04-01", "2020-06-01"];

/// A provider: its namespace as ARM spells it, its resource types, and whether they are regional
/// (listed with every location) or global.
struct Provider {
    namespace: &'static str,
    types: &'static [(&'static str, bool)],
}

const PROVIDERS: &[Provider] = &[
    Provider {
        namespace: "Microsoft.ContainerService",
        types: &[
            ("managedClusters", true),
            ("managedClusters/runCommands", true),
            ("managedClusters/commandResults", true),
            ("savedCommands", false),
            ("commandRuns", false),
            ("locations", false),
        ],
    },
    Provider { namespace: "Microsoft.Resources", types: &[("resourceGroups", true), ("subscriptions", false)] },
    Provider { namespace: "Microsoft.Authorization", types: &[("roleAssignments", false), ("roleDefinitions", false)] },
    Provider { namespace: "Microsoft.Insights", types: &[("eventtypes", false)] },
    Provider { namespace: "Microsoft.EventGrid", types: &[("eventSubscriptions", false)] },
];

fn render(subscription: &SubscriptionId, provider: &Provider) -> Value {
    let locations: Vec<&str> = REGIONS.iter().map(|(_, display, _)| *display).collect();
    let versions: Vec<&str> = if provider.namespace == "Microsoft.ContainerService" {
        KNOWN_CONTAINER_SERVICE_VERSIONS.iter().rev().copied().collect()
    } else {
        OTHER_VERSIONS.to_vec()
    };
    let types: Vec<Value> = provider
        .types
        .iter()
        .map(|(name, regional)| {
            json_value!({
                "resourceType": name,
                "locations": if *regional { locations.clone() } else { Vec::new() },
                "apiVersions": versions,
                "capabilities": "None",
            })
        })
        .collect();
    json_value!({
        "id": format!("/subscriptions/{subscription}/providers/{}", provider.namespace),
        "namespace": provider.namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": types,
    })
}

/// `GET /subscriptions/{s}/providers`.
pub(crate) fn list(subscription: &SubscriptionId) -> Response {
    let value: Vec<Value> = PROVIDERS.iter().map(|p| render(subscription, p)).collect();
    json(StatusCode::OK, &json_value!({ "value": value }))
}

/// `GET /subscriptions/{s}/providers/{namespace}`, and its `register` action (a no-op: every
/// provider here is registered).
pub(crate) fn get(subscription: &SubscriptionId, namespace: &str) -> Result<Response, ApiError> {
    let provider = PROVIDERS
        .iter()
        .find(|p| p.namespace.eq_ignore_ascii_case(namespace))
        .ok_or_else(|| ApiError::ProviderNotFound(namespace.to_string()))?;
    Ok(json(StatusCode::OK, &render(subscription, provider)))
}

/// `GET /subscriptions/{s}/locations`.
pub(crate) fn locations(subscription: &SubscriptionId) -> Response {
    let value: Vec<Value> = REGIONS
        .iter()
        .map(|(name, display, geography)| {
            json_value!({
                "id": format!("/subscriptions/{subscription}/locations/{name}"),
                "name": name,
                "type": "Region",
                "displayName": display,
                "regionalDisplayName": format!("({geography}) {display}"),
                "metadata": {"regionType": "Physical", "regionCategory": "Recommended", "geography": geography},
            })
        })
        .collect();
    json(StatusCode::OK, &json_value!({ "value": value }))
}
