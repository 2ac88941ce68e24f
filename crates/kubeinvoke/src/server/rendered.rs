//! Finished results as they were last sent: a finished result never changes, and serialising it
//! (escaping its logs) was the largest cost of a read in the profile (BENCHMARKS.md). A hit
//! skips the store too: the caller has found the cluster first (a deleted cluster is a 404
//! before this is asked, and a cluster created again under the same name has a new uid), and
//! a finished result leaves the store only when it expires, which is checked here. The one
//! finished result that may still change is one called lost (`WorkerLost`): the replica that ran
//! it may add what it saw once it reaches the database again, so it is never kept.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::command::{CommandId, CommandRecord};
use crate::store::ClusterUid;

/// Bytes kept at most; over it the cache starts afresh.
const MAX_BYTES: usize = 16 << 20;

struct Rendered {
    cluster: ClusterUid,
    expires_at: i64,
    body: Bytes,
}

/// command → its rendering, and the bytes held. Command ids are unique across clusters; the
/// cluster is checked on a hit so one cluster's path never shows another's command.
type Entries = (HashMap<CommandId, Rendered>, usize);

pub struct RenderedResults {
    /// `false` with `--read-cache false`: every read renders (the growth benchmark measures the store).
    enabled: bool,
    entries: Mutex<Entries>,
}

impl RenderedResults {
    pub fn new(enabled: bool) -> Self {
        RenderedResults { enabled, entries: Mutex::default() }
    }

    /// The body last sent for this cluster's finished command, unless it has expired since.
    pub fn get(&self, cluster: &ClusterUid, id: &CommandId, now_millis: i64) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let rendered = entries.0.get(id)?;
        (rendered.cluster == *cluster && rendered.expires_at > now_millis).then(|| rendered.body.clone())
    }

    /// Keeps the body of a finished record (one that can expire; others are not kept).
    pub fn keep(&self, cluster: &ClusterUid, record: &CommandRecord, body: Bytes) {
        let final_for_good = record.state.is_terminal() && !record.may_gain_a_late_report();
        let Some(expires_at) = record.expires_at.filter(|_| self.enabled && final_for_good) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.1 + body.len() > MAX_BYTES {
            entries.0.clear();
            entries.1 = 0;
        }
        entries.1 += body.len();
        let rendered = Rendered { cluster: cluster.clone(), expires_at, body };
        if let Some(replaced) = entries.0.insert(record.id.clone(), rendered) {
            entries.1 -= replaced.body.len();
        }
    }
}
