//! The deliverer: every replica runs one. Each pass it leases the event subscriptions that are
//! free or its own, and for each walks the activity log from the subscription's cursor, posting
//! the CloudEvents it wants in order. The cursor moves only past an event that was delivered (a
//! 2xx), dead-lettered (its retry budget or time to live spent), or not for this subscription, so
//! a restart or a replica's death loses nothing; receivers deduplicate by the event id.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::webhook::Webhooks;
use super::{SubscriptionSpec, cloud_event};
use crate::store::{DeliveryState, DocumentKind, DocumentRecord, Lease, Store, StoreResult};
use crate::time::now_millis;

/// Events read per subscription per pass.
const BATCH: usize = 100;
/// The longest wait between two attempts at one event.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(crate) struct Deliverer {
    store: Arc<dyn Store>,
    webhooks: Webhooks,
    owner: String,
    lease: Duration,
    retry_base: Duration,
}

/// A subscription as the deliverer needs it.
pub(crate) struct Target {
    pub key: String,
    /// Lower-cased scope id: events of resources at or below it.
    pub scope: String,
    pub spec: SubscriptionSpec,
    pub signing_key: String,
}

impl Target {
    pub(crate) fn from_record(record: &DocumentRecord) -> Option<Target> {
        let properties = record.document.get("properties")?.as_object()?;
        Some(Target {
            key: subscription_key(&record.scope, &record.name),
            scope: record.scope.trim_end_matches('/').to_lowercase(),
            spec: SubscriptionSpec::parse_stored(properties).ok()?,
            signing_key: record.document.get("signingKey")?.as_str()?.to_string(),
        })
    }

    fn covers(&self, resource: &str) -> bool {
        let resource = resource.to_lowercase();
        resource == self.scope || resource.strip_prefix(&self.scope).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A subscription's delivery key: its lower-cased resource id.
pub(crate) fn subscription_key(scope: &str, name: &str) -> String {
    format!("{}/providers/microsoft.eventgrid/eventsubscriptions/{}", scope.trim_end_matches('/'), name).to_lowercase()
}

impl Deliverer {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        webhooks: Webhooks,
        owner: String,
        lease: Duration,
        retry_base: Duration,
    ) -> JoinHandle<()> {
        let deliverer = Arc::new(Deliverer { store, webhooks, owner, lease, retry_base });
        tokio::spawn(async move {
            loop {
                match deliverer.pass().await {
                    // More may be waiting right behind what was just handled.
                    Ok(handled) if handled > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "delivering events failed; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    /// One pass over the subscriptions this replica may deliver; returns how many events moved
    /// a cursor (delivered, dead-lettered or skipped as not wanted).
    async fn pass(&self) -> StoreResult<usize> {
        let records = self.store.documents().list_documents(DocumentKind::EventSubscription, None).await?;
        let targets: Vec<Target> = records.iter().filter_map(Target::from_record).collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = targets.iter().map(|t| t.key.clone()).collect();
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX));
        let lease = Lease { owner: self.owner.clone(), now, until };
        let states = self.store.deliveries().lease_deliveries(&keys, &lease).await?;
        let work = states.into_iter().filter_map(|state| {
            let target = targets.iter().find(|t| t.key == state.key)?;
            Some(self.drive(target, state))
        });
        let mut handled = 0;
        for result in futures_util::future::join_all(work).await {
            handled += result?;
        }
        Ok(handled)
    }

    /// Delivers what is due for one subscription, in order, stopping at the first failure.
    async fn drive(&self, target: &Target, mut state: DeliveryState) -> StoreResult<usize> {
        if state.next_attempt_at > now_millis() {
            return Ok(0);
        }
        let start = state.cursor;
        let mut handled = 0;
        for event in self.store.activity().events_after(state.cursor, BATCH).await? {
            handled += 1;
            let wanted = cloud_event(&event.content).filter(|(kind, cloud)| {
                target.spec.wants(kind) && cloud["source"].as_str().is_some_and(|s| target.covers(s))
            });
            let Some((_, cloud)) = wanted else {
                state.cursor = event.seq;
                continue;
            };
            let expired = now_millis() - event.time > i64::try_from(target.spec.ttl.as_millis()).unwrap_or(i64::MAX);
            let outcome = if expired {
                Err("its time to live ran out".to_string())
            } else {
                let body = cloud.to_string();
                self.webhooks
                    .deliver(&target.spec.endpoint, &target.signing_key, &body)
                    .await
                    .map_err(|e| e.to_string())
            };
            match outcome {
                Ok(()) => {
                    state.cursor = event.seq;
                    state.attempts = 0;
                    state.delivered += 1;
                    state.last_error = None;
                }
                Err(error) => {
                    state.attempts += 1;
                    state.last_error = Some(error.clone());
                    if expired || state.attempts >= i64::from(target.spec.max_attempts) {
                        tracing::warn!(subscription = %target.key, event_id = %event.event_id, attempts = state.attempts, error, "event dead-lettered");
                        state.dead_lettered += 1;
                        state.last_dead_event = Some(event.event_id.clone());
                        state.cursor = event.seq;
                        state.attempts = 0;
                    } else {
                        let wait = self.backoff(state.attempts);
                        state.next_attempt_at = now_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                        tracing::info!(subscription = %target.key, event_id = %event.event_id, attempt = state.attempts, retry_in_ms = wait.as_millis() as u64, error, "event delivery failed; will retry");
                        self.save(&state).await?;
                        return Ok(handled - 1);
                    }
                }
            }
            self.save(&state).await?;
        }
        if state.cursor != start {
            self.save(&state).await?;
        }
        Ok(handled)
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
        self.retry_base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }

    async fn save(&self, state: &DeliveryState) -> StoreResult<()> {
        if !self.store.deliveries().save_delivery(state, &self.owner).await? {
            tracing::warn!(subscription = %state.key, "lost the delivery lease to another replica");
        }
        Ok(())
    }
}

/// The delivery status shown on a subscription (an extension of Event Grid's resource).
pub(crate) fn status_of(state: Option<&DeliveryState>) -> Value {
    match state {
        None => serde_json::json!({"delivered": 0, "deadLettered": 0}),
        Some(s) => serde_json::json!({
            "delivered": s.delivered,
            "deadLettered": s.dead_lettered,
            "lastDeadLetteredEventId": s.last_dead_event,
            "retrying": s.attempts > 0,
            "lastError": s.last_error,
        }),
    }
}
