//! A command's output: the log buffer that keeps the first `cap` bytes and counts the rest, the
//! live-output file, and [`CommandOutput`], which feeds both through the run's secret mask.

use super::masking::SecretMask;

pub(super) struct CappedLog {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl CappedLog {
    pub(super) fn new(cap: usize) -> Self {
        CappedLog { kept: Vec::with_capacity(cap.min(64 * 1024)), cap, dropped: 0 }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        let (keep, drop) = bytes.split_at(room.min(bytes.len()));
        self.kept.extend_from_slice(keep);
        self.dropped += drop.len() as u64;
    }

    /// The bytes kept so far.
    pub(super) fn head(&self) -> &[u8] {
        &self.kept
    }

    /// The text of the log, with a plain notice when output was cut and any closing `note`.
    pub(super) fn finish(self, note: Option<&str>) -> String {
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

/// The full output on disk as it is produced, for live logs: survives a server crash, and a
/// reconnecting reader continues from any offset. Write errors only disable it (logged once),
/// except a full disk, which the run must hear of: its output can no longer be kept.
pub(super) struct OutputFile {
    file: Option<tokio::fs::File>,
    left: u64,
    out_of_space: bool,
}

impl OutputFile {
    pub(super) async fn create(path: Option<&std::path::Path>, cap: u64) -> Self {
        let file = match path {
            Some(path) => match tokio::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).await {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "live output disabled for this command");
                    None
                }
            },
            None => None,
        };
        OutputFile { file, left: cap, out_of_space: false }
    }

    pub(super) async fn push(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let Some(file) = &mut self.file else { return };
        let take = bytes.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if take == 0 {
            return;
        }
        if let Err(e) = file.write_all(&bytes[..take]).await {
            self.out_of_space =
                e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded;
            tracing::warn!(error = %e, out_of_space = self.out_of_space, "writing live output failed; it stops here");
            self.file = None;
            return;
        }
        self.left -= take as u64;
    }

    /// Whether the disk it is on filled up under it.
    pub(super) fn out_of_space(&self) -> bool {
        self.out_of_space
    }
}

/// Where a run's output goes, masked first: its result log (capped) and its live-output file.
pub(super) struct CommandOutput {
    mask: SecretMask,
    log: CappedLog,
    file: OutputFile,
}

impl CommandOutput {
    pub(super) async fn create(
        path: Option<&std::path::Path>,
        max_output_bytes: u64,
        log_cap: usize,
        secrets: &[String],
    ) -> Self {
        CommandOutput {
            mask: SecretMask::new(secrets),
            log: CappedLog::new(log_cap),
            file: OutputFile::create(path, max_output_bytes).await,
        }
    }

    pub(super) async fn push(&mut self, bytes: &[u8]) {
        if self.mask.is_empty() {
            self.log.push(bytes);
            self.file.push(bytes).await;
            return;
        }
        let masked = self.mask.push(bytes);
        self.log.push(&masked);
        self.file.push(&masked).await;
    }

    /// Whether the live-output file's disk filled up: the run cannot keep its output.
    pub(super) fn out_of_space(&self) -> bool {
        self.file.out_of_space()
    }

    /// The log kept so far (masked; a possible start of a secret may still be held back).
    pub(super) fn head(&self) -> &[u8] {
        self.log.head()
    }

    /// The result's log, with whatever the mask held back and a closing `note`.
    pub(super) async fn finish(mut self, note: Option<&str>) -> String {
        let tail = self.mask.finish();
        self.log.push(&tail);
        self.file.push(&tail).await;
        self.log.finish(note)
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
