//! A command container's output: followed live into the live-output file while it runs, and read
//! whole once it has ended. The end of the output is the container's end, not a quiet period on
//! the stream: once the kubelet reports the container terminated, one plain (not followed) read
//! of its log returns everything it wrote, and the live file gets what the stream had not
//! delivered yet. A Pod that was stopped (deleted) instead has its stream waited for, bounded,
//! and says so in its log when the output may be cut.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::spec;
use crate::executor::masking::SecretMask;
use crate::executor::output::OutputFile;

/// How long a stopped Pod's log stream is waited for at most.
const STREAM_PATIENCE: Duration = Duration::from_secs(10);

/// What the follower read, and how much of it reached the live file (the rest may still be held
/// back by the secret mask).
#[derive(Default)]
struct Read {
    bytes: Vec<u8>,
    written: usize,
}

/// The live file and its mask, handed back when the follower stops.
struct Live {
    file: OutputFile,
    mask: SecretMask,
}

pub(super) struct Follower {
    task: tokio::task::JoinHandle<Live>,
    stop: Arc<tokio::sync::Notify>,
    read: Arc<Mutex<Read>>,
}

/// The whole output of a run, and whether it may be cut.
pub(super) struct Output {
    pub bytes: Vec<u8>,
    pub may_be_cut: bool,
}

impl Follower {
    /// Starts following the command container of `pod` (it runs or has run).
    pub(super) fn start(
        pods: Api<Pod>,
        pod: String,
        path: Option<std::path::PathBuf>,
        cap: u64,
        mask: SecretMask,
    ) -> Self {
        let stop = Arc::new(tokio::sync::Notify::new());
        let read = Arc::new(Mutex::new(Read::default()));
        let task = tokio::spawn(follow(pods, pod, path, cap, mask, stop.clone(), read.clone()));
        Follower { task, stop, read }
    }

    /// The output of a container that terminated: read whole, the live file completed with
    /// what the stream had not delivered yet. When the whole cannot be read (the Pod is gone, or
    /// the output is not UTF-8), what the stream delivers is all there is, as for a stopped Pod.
    pub(super) async fn finish_ended(self, pods: &Api<Pod>, pod: &str, cap: u64) -> Output {
        let params =
            LogParams { container: Some(spec::CONTAINER.into()), limit_bytes: Some(cap as i64), ..Default::default() };
        let Ok(whole) = pods.logs(pod, &params).await else { return self.finish_stopped(pod).await };
        self.stop.notify_one();
        let live = self.task.await.ok();
        let read = std::mem::take(&mut *self.read.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(mut live) = live {
            // What the live file lacks: the whole after what reached it (the mask's held-back
            // bytes are fed again from the whole). A whole that does not begin with what the
            // file has (a rotated log) leaves the file as it is.
            let rest = match whole.as_bytes().strip_prefix(&read.bytes[..read.written]) {
                Some(rest) => {
                    live.mask.discard_held();
                    live.mask.mask_all(rest)
                }
                None => live.mask.finish(),
            };
            live.file.push(&rest).await;
        }
        Output { bytes: whole.into_bytes(), may_be_cut: false }
    }

    /// The output of a Pod we deleted (canceled, timed out, shut down): its stream ends with the
    /// container; a node that keeps it open is waited for at most [`STREAM_PATIENCE`].
    pub(super) async fn finish_stopped(mut self, pod: &str) -> Output {
        let closed = tokio::time::timeout(STREAM_PATIENCE, &mut self.task).await;
        let may_be_cut = closed.is_err();
        let live = match closed {
            Ok(live) => live.ok(),
            Err(_) => {
                tracing::debug!(pod, "the log stream stayed open after the Pod was deleted; keeping what was read");
                self.stop.notify_one();
                self.task.await.ok()
            }
        };
        if let Some(mut live) = live {
            let held = live.mask.finish();
            live.file.push(&held).await;
        }
        let read = std::mem::take(&mut *self.read.lock().unwrap_or_else(|p| p.into_inner()));
        Output { bytes: read.bytes, may_be_cut }
    }
}

/// Follows the container's output into the live file (masked) and into `read` (as it came, up
/// to `cap` bytes: the result is masked as a whole), until the stream ends or `stop`.
async fn follow(
    pods: Api<Pod>,
    pod: String,
    path: Option<std::path::PathBuf>,
    cap: u64,
    mask: SecretMask,
    stop: Arc<tokio::sync::Notify>,
    read: Arc<Mutex<Read>>,
) -> Live {
    let mut live = Live { file: OutputFile::create(path.as_deref(), cap).await, mask };
    let params = LogParams {
        container: Some(spec::CONTAINER.into()),
        follow: true,
        limit_bytes: Some(cap as i64),
        ..Default::default()
    };
    let stream = tokio::select! {
        stream = pods.log_stream(&pod, &params) => match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(pod = %pod, error = %e, "cannot follow the command's output");
                return live;
            }
        },
        _ = stop.notified() => return live,
    };
    use futures_util::AsyncReadExt;
    let mut stream = std::pin::pin!(stream);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // A read given up on has taken no bytes: stopping between writes loses nothing.
        let n = tokio::select! {
            n = stream.read(&mut chunk) => match n {
                Ok(0) | Err(_) => return live,
                Ok(n) => n,
            },
            _ = stop.notified() => return live,
        };
        let masked = live.mask.push(&chunk[..n]);
        live.file.push(&masked).await;
        let mut read = read.lock().unwrap_or_else(|p| p.into_inner());
        if (read.bytes.len() as u64) < cap {
            read.bytes.extend_from_slice(&chunk[..n]);
        }
        read.written = read.bytes.len().saturating_sub(live.mask.held());
    }
}
