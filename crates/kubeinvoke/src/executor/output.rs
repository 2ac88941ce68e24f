//! A log buffer that keeps the first `cap` bytes and counts the rest.

pub struct CappedLog {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl CappedLog {
    pub fn new(cap: usize) -> Self {
        CappedLog { kept: Vec::with_capacity(cap.min(64 * 1024)), cap, dropped: 0 }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        let (keep, drop) = bytes.split_at(room.min(bytes.len()));
        self.kept.extend_from_slice(keep);
        self.dropped += drop.len() as u64;
    }

    /// The bytes kept so far.
    pub fn head(&self) -> &[u8] {
        &self.kept
    }

    /// The text of the log, with a plain notice when output was cut and any closing `note`.
    pub fn finish(self, note: Option<&str>) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        let mut append = |line: &str| {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
        };
        if self.dropped > 0 {
            append(&format!(
                "[kubeinvoke] output truncated: the first {} bytes are kept, {} more bytes were discarded",
                self.cap, self.dropped
            ));
        }
        if let Some(note) = note {
            append(&format!("[kubeinvoke] {note}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_says_what_was_cut() {
        let mut log = CappedLog::new(5);
        log.push(b"abc");
        log.push(b"defgh");
        let text = log.finish(None);
        assert!(text.starts_with("abcde\n[kubeinvoke] output truncated"), "{text}");
        assert!(text.contains("3 more bytes"), "{text}");
    }

    #[test]
    fn untouched_when_under_the_cap() {
        let mut log = CappedLog::new(100);
        log.push(b"hello\n");
        assert_eq!(log.finish(None), "hello\n");
    }
}
