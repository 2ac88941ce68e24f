//! Where each event subscription's deliveries stand: the last activity log event handled, the
//! retries of the current one, the dead-lettered count, and which replica delivers (a lease).

mod postgres;
mod sqlite;

use crate::store::sql::Sql;
use async_trait::async_trait;

use super::rows::Columns;
use super::{Lease, StoreError, StoreResult};

pub(super) use postgres::MIGRATION as POSTGRES_MIGRATION;
pub(super) use sqlite::MIGRATION as SQLITE_MIGRATION;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryState {
    /// The subscription's key (its lower-cased resource id).
    pub key: String,
    /// The last activity log seq handled (delivered, dead-lettered or not for it).
    pub cursor: i64,
    /// Failed attempts at the event after the cursor.
    pub attempts: i64,
    /// Not before this (Unix ms): the backoff of the current event.
    pub next_attempt_at: i64,
    pub delivered: i64,
    pub dead_lettered: i64,
    pub last_dead_event: Option<String>,
    pub last_error: Option<String>,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Starts a subscription's deliveries after `cursor` (events before it are not for it);
    /// keeps an existing state.
    async fn init_delivery(&self, key: &str, cursor: i64) -> StoreResult<()>;
    /// Leases the states of `keys` that are free or this owner's; returns them.
    async fn lease_deliveries(&self, keys: &[String], lease: &Lease) -> StoreResult<Vec<DeliveryState>>;
    /// Saves a state this owner leases; false when the lease was lost.
    async fn save_delivery(&self, state: &DeliveryState, owner: &str) -> StoreResult<bool>;
    async fn get_delivery(&self, key: &str) -> StoreResult<Option<DeliveryState>>;
    async fn delete_delivery(&self, key: &str) -> StoreResult<()>;
    /// The newest activity log seq (0 when empty): where a new subscription starts.
    async fn activity_head(&self) -> StoreResult<i64>;
}

macro_rules! delivery_columns {
    () => {
        "subscription_key, cursor_seq, attempts, next_attempt_at, delivered, dead_lettered, last_dead_event, last_error"
    };
}
const COLUMNS: &str = delivery_columns!();
static DELIVERY: Sql =
    Sql::new(concat!("SELECT ", delivery_columns!(), " FROM event_deliveries WHERE subscription_key = $1"));

fn state(r: &impl Columns) -> Result<DeliveryState, StoreError> {
    Ok(DeliveryState {
        key: r.text("subscription_key")?,
        cursor: r.int("cursor_seq")?,
        attempts: r.int("attempts")?,
        next_attempt_at: r.int("next_attempt_at")?,
        delivered: r.int("delivered")?,
        dead_lettered: r.int("dead_lettered")?,
        last_dead_event: r.opt_text("last_dead_event")?,
        last_error: r.opt_text("last_error")?,
    })
}

// The statements both dialects share (PostgreSQL's `$n`; SQLite reads them as `?n`).

static SAVE_DELIVERY: Sql = Sql::new(
    "UPDATE event_deliveries SET cursor_seq = $3, attempts = $4, next_attempt_at = $5, delivered = $6,
                        dead_lettered = $7, last_dead_event = $8, last_error = $9
                 WHERE subscription_key = $1 AND owner = $2",
);
static DELETE_DELIVERY: Sql = Sql::new("DELETE FROM event_deliveries WHERE subscription_key = $1");
static ACTIVITY_HEAD: Sql = Sql::new("SELECT COALESCE(MAX(seq), 0) AS head FROM activity_log");
