//! Finished results as they were last sent: a finished result never changes, and serialising it
//! (escaping its logs) was the largest cost of a read in the profile (BENCHMARKS.md). The record is
//! still read from the store (its cache) first, so a result deleted or expired is never served
//! from here; a hit only skips the serialisation.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::command::{CommandId, CommandRecord};
use crate::store::ClusterUid;

/// Bytes kept at most; over it the cache starts afresh.
const MAX_BYTES: usize = 16 << 20;

/// (cluster, command) → (finished at, body), and the bytes held.
type Entries = (HashMap<(ClusterUid, CommandId), (i64, Bytes)>, usize);

pub struct RenderedResults {
    /// `false` with `--read-cache false`: every read renders (the growth benchmark measures the store).
    enabled: bool,
    entries: Mutex<Entries>,
}

impl RenderedResults {
    pub fn new(enabled: bool) -> Self {
        RenderedResults { enabled, entries: Mutex::default() }
    }

    /// The body last rendered for this finished record, if it was rendered from the same record.
    pub fn get(&self, cluster: &ClusterUid, record: &CommandRecord) -> Option<Bytes> {
        let finished = record.finished_at.filter(|_| self.enabled)?;
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.0.get(&(cluster.clone(), record.id.clone())) {
            Some((at, body)) if *at == finished => Some(body.clone()),
            _ => None,
        }
    }

    pub fn keep(&self, cluster: &ClusterUid, record: &CommandRecord, body: Bytes) {
        let Some(finished) = record.finished_at.filter(|_| self.enabled) else { return };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.1 + body.len() > MAX_BYTES {
            entries.0.clear();
            entries.1 = 0;
        }
        entries.1 += body.len();
        entries.0.insert((cluster.clone(), record.id.clone()), (finished, body));
    }
}
