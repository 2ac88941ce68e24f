//! Microsoft.EventGrid: event subscriptions with webhook destinations, as `az eventgrid
//! event-subscription create|show|list|delete` send them. Creating one runs the CloudEvents
//! validation handshake with its endpoint first (as Event Grid does) and makes its signing key.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::arm::ApiError;
use crate::arm::refusal::ExtensionRefusal;
use crate::arm::wire::{
    DeliveryAttribute, DeliveryAttributeProperties, DeliveryAttributes, DocumentResource, ListResult,
    WebhookDestination, WebhookDestinationProperties,
};
use crate::events::delivery::{Target, status_of, subscription_key};
use crate::events::webhook::SIGNATURE_HEADER;
use crate::events::{DeliveryConfig, SubscriptionSpec};
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::{DocumentKind, DocumentRecord};
use crate::time::now_millis;

const TYPE: &str = "Microsoft.EventGrid/eventSubscriptions";

fn not_found(name: &str) -> ApiError {
    ExtensionRefusal::EventSubscription(name.to_string()).into()
}

async fn render(app: &AppState, record: &DocumentRecord) -> Result<DocumentResource, ApiError> {
    let mut properties = record.document.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let key = subscription_key(&record.scope, &record.name);
    let state = app.store.deliveries().get_delivery(&key).await?;
    if let Some(target) = Target::from_record(record) {
        let destination = WebhookDestination {
            endpoint_type: "WebHook",
            properties: WebhookDestinationProperties {
                endpoint_base_url: target.spec.endpoint.base(),
                max_events_per_batch: 1,
                preferred_batch_size_in_kilobytes: 64,
            },
        };
        properties.insert("destination".into(), serde_json::to_value(destination).map_err(ApiError::internal)?);
    }
    properties.insert("topic".into(), record.scope.clone().into());
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("deliveryStatus".into(), status_of(state.as_ref()));
    Ok(DocumentResource {
        id: format!("{}/providers/Microsoft.EventGrid/eventSubscriptions/{}", record.scope, record.name),
        name: record.name.clone(),
        kind: TYPE.into(),
        properties,
        system_data: None,
    })
}

fn valid_name(name: &str) -> bool {
    (3..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(crate) async fn put(
    app: &AppState,
    ctx: &RequestContext,
    scope: &str,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::invalid("name", format!("'{name}' must be 3-64 letters, digits or '-'.")));
    }
    let body: Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let mut properties = body.get("properties").and_then(Value::as_object).cloned().ok_or_else(|| {
        ApiError::invalid("properties", "'properties' must be an object with a WebHook 'destination'.")
    })?;
    let config: &DeliveryConfig = &app.config.events;
    let spec = SubscriptionSpec::parse(&properties, &config.addresses)
        .map_err(|e| ApiError::invalid(e.property, e.message))?;
    app.webhooks.handshake(&spec.endpoint).await.map_err(|e| {
        ApiError::invalid(
            "properties.destination.properties.endpointUrl",
            format!("Webhook validation handshake failed for {}: {e}", spec.endpoint.base()),
        )
    })?;
    properties.remove("provisioningState");
    properties.remove("deliveryStatus");
    let documents = app.store.documents();
    let existing = documents.get_document(DocumentKind::EventSubscription, scope, name).await?;
    let signing_key = existing
        .as_ref()
        .and_then(|e| e.document.get("signingKey").cloned())
        .unwrap_or_else(|| json!(new_signing_key()));
    let now = now_millis();
    let record = DocumentRecord {
        kind: DocumentKind::EventSubscription,
        scope: scope.trim_end_matches('/').to_string(),
        name: name.to_string(),
        document: json!({"properties": properties, "signingKey": signing_key}).as_object().cloned().unwrap_or_default(),
        created_at: now,
        updated_at: now,
    };
    let put = documents.put_document(record).await?;
    let head = app.store.deliveries().activity_head().await?;
    app.store.deliveries().init_delivery(&subscription_key(&put.value.scope, &put.value.name), head).await?;
    tracing::info!(subscription = %subscription_key(&put.value.scope, &put.value.name), endpoint = %spec.endpoint.base(), "event subscription written");
    // Event Grid answers a create-or-update with 201 (the SDK accepts nothing else).
    Ok(json(StatusCode::CREATED, &render(app, &put.value).await?))
}

/// 32 random bytes, hex: the key deliveries are signed with.
fn new_signing_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn get(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    let found = app.store.documents().get_document(DocumentKind::EventSubscription, scope, name).await?;
    Ok(json(StatusCode::OK, &render(app, &found.ok_or_else(|| not_found(name))?).await?))
}

pub(crate) async fn list(app: &AppState, scope: &str) -> Result<Response, ApiError> {
    let records = app.store.documents().list_documents(DocumentKind::EventSubscription, Some(scope)).await?;
    let mut value = Vec::with_capacity(records.len());
    for record in &records {
        value.push(render(app, record).await?);
    }
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

pub(crate) async fn delete(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    let deleted = app.store.documents().delete_document(DocumentKind::EventSubscription, scope, name).await?;
    app.store.deliveries().delete_delivery(&subscription_key(scope, name)).await?;
    Ok(if deleted { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
}

/// `POST …/getDeliveryAttributes`: the signing key receivers check the signature header with.
pub(crate) async fn attributes(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    let found = app.store.documents().get_document(DocumentKind::EventSubscription, scope, name).await?;
    let record = found.ok_or_else(|| not_found(name))?;
    let key = record.document.get("signingKey").cloned().unwrap_or(Value::Null);
    let attribute = DeliveryAttribute {
        name: SIGNATURE_HEADER,
        kind: "Static",
        properties: DeliveryAttributeProperties { value: key, is_secret: true },
    };
    Ok(json(StatusCode::OK, &DeliveryAttributes { value: vec![attribute] }))
}
