//! The hash chain: each event's hash covers its predecessor's hash and its own content.

use sha2::{Digest, Sha256};

use super::ActivityEvent;

/// The predecessor of the first event.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn hash(prev_hash: &str, content: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first event that does not fit the chain, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Broken {
    /// Its content no longer matches its hash: it was changed.
    #[error("event {seq} ({event_id}) was changed: its content does not match its hash")]
    Changed { seq: i64, event_id: String },
    /// A column the API filters on no longer matches its content: it was edited (to hide the
    /// event from a filter, or to blame someone else).
    #[error("event {seq} ({event_id}) was changed: its stored {column} does not match its content")]
    ColumnChanged { seq: i64, event_id: String, column: &'static str },
    /// It does not follow the event before it: one was removed, or events were reordered.
    #[error(
        "event {seq} ({event_id}) does not follow the event before it (seq {previous_seq}): an event was removed or events were reordered"
    )]
    Unlinked { seq: i64, event_id: String, previous_seq: i64 },
}

/// Walks the chain in order. `anchor` is the hash the first event must follow (`GENESIS`, or the
/// last verified hash when continuing). Returns the hash of the last event, or the first break.
pub(crate) struct Walk {
    expected_prev: String,
    previous_seq: i64,
    pub checked: u64,
}

impl Walk {
    pub(crate) fn new(anchor: &str) -> Self {
        Walk { expected_prev: anchor.to_string(), previous_seq: 0, checked: 0 }
    }

    /// Checks the next event in sequence order.
    pub(crate) fn next(&mut self, event: &ActivityEvent) -> Result<(), Broken> {
        if hash(&event.prev_hash, &event.content) != event.hash {
            return Err(Broken::Changed { seq: event.seq, event_id: event.event_id.clone() });
        }
        let derived = super::FilterColumns::of_content(&event.content)
            .ok_or_else(|| Broken::Changed { seq: event.seq, event_id: event.event_id.clone() })?;
        if let Some(column) = derived.first_difference(&event.columns) {
            return Err(Broken::ColumnChanged { seq: event.seq, event_id: event.event_id.clone(), column });
        }
        if event.prev_hash != self.expected_prev {
            return Err(Broken::Unlinked {
                seq: event.seq,
                event_id: event.event_id.clone(),
                previous_seq: self.previous_seq,
            });
        }
        self.expected_prev = event.hash.clone();
        self.previous_seq = event.seq;
        self.checked += 1;
        Ok(())
    }

    /// The hash the next event must follow.
    pub(crate) fn head(&self) -> &str {
        &self.expected_prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events `e1…` by `callers`, chained, with their columns as the store writes them.
    fn chain(callers: &[&str]) -> Vec<ActivityEvent> {
        let mut prev = GENESIS.to_string();
        callers
            .iter()
            .enumerate()
            .map(|(i, caller)| {
                let content = crate::activity::NewEvent {
                    event_id: format!("e{}", i + 1),
                    time: 1_700_000_000_000 + i as i64,
                    operation: "Microsoft.ContainerService/managedClusters/runcommand/action".into(),
                    status: "Succeeded".into(),
                    sub_status: String::new(),
                    caller: caller.to_string(),
                    correlation_id: format!("c{i}"),
                    resource_id:
                        "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/c1"
                            .into(),
                    properties: Default::default(),
                }
                .content();
                let columns = super::super::FilterColumns::of_content(&content).expect("canonical");
                let event = ActivityEvent {
                    seq: i as i64 + 1,
                    event_id: columns.event_id.clone(),
                    time: columns.time,
                    hash: hash(&prev, &content),
                    content,
                    prev_hash: prev.clone(),
                    columns,
                };
                prev = event.hash.clone();
                event
            })
            .collect()
    }

    fn first_break(events: &[ActivityEvent]) -> Option<Broken> {
        let mut walk = Walk::new(GENESIS);
        events.iter().find_map(|e| walk.next(e).err())
    }

    #[test]
    fn an_intact_chain_verifies_and_every_tampering_is_named() {
        let events = chain(&["a", "b", "c", "d"]);
        assert_eq!(first_break(&events), None);
        let mut changed = events.clone();
        changed[1].content = changed[1].content.replace("\"b\"", "\"B\"");
        assert_eq!(first_break(&changed), Some(Broken::Changed { seq: 2, event_id: "e2".into() }));
        let mut removed = events.clone();
        removed.remove(2);
        assert!(matches!(first_break(&removed), Some(Broken::Unlinked { seq: 4, previous_seq: 2, .. })));
        let mut swapped = events.clone();
        swapped.swap(1, 2);
        assert!(matches!(first_break(&swapped), Some(Broken::Unlinked { seq: 3, .. })));
    }

    #[test]
    fn every_column_the_api_filters_on_is_covered() {
        let events = chain(&["a", "b", "c"]);
        type Edit = fn(&mut ActivityEvent);
        let edits: [(&str, Edit); 6] = [
            ("caller", |e| e.columns.caller = "someone-else".into()),
            ("status", |e| e.columns.status = "Failed".into()),
            ("resource_key", |e| e.columns.resource_key = "/subscriptions/s/resourcegroups/other".into()),
            ("group_key", |e| e.columns.group_key = "other".into()),
            ("event_time", |e| e.columns.time += 3_600_000),
            ("correlation_id", |e| e.columns.correlation_id = "x".into()),
        ];
        for (column, edit) in edits {
            let mut edited = events.clone();
            edit(&mut edited[1]);
            assert_eq!(
                first_break(&edited),
                Some(Broken::ColumnChanged { seq: 2, event_id: "e2".into(), column }),
                "{column}"
            );
        }
    }
}
