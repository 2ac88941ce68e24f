//! Knowing when a bubblewrap sandbox is really over.
//!
//! bubblewrap exits as soon as the command's main process does; background processes the command
//! left are then killed by the kernel, which empties the command's PID namespace before that
//! namespace's init (bubblewrap's pid 1) finishes exiting. So "the namespace's init has exited"
//! means "no process of the command is left" — what a uid's lease waits for before the uid goes
//! to another command — without a scan of `/proc` (issue #20).
//!
//! bubblewrap names its init on `--info-fd` (`{"child-pid": N, …}`); a pidfd of that process
//! becomes readable when it has exited.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags};
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// The most bubblewrap writes on its info descriptor (a small JSON object).
const INFO_LIMIT: u64 = 4096;

/// The pipe bubblewrap reports its namespace's init on, before the sandbox is spawned.
pub(super) struct InfoPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl InfoPipe {
    pub(super) fn new() -> std::io::Result<Self> {
        // Close-on-exec: the child clears the flag on its copy only (see `Sandbox::command`).
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(InfoPipe { read, write })
    }

    /// The descriptor number bubblewrap writes to (`--info-fd`).
    pub(super) fn child_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// After the spawn: our copy of the write end goes, so the pipe ends when bubblewrap is done.
    pub(super) fn into_watch(self) -> std::io::Result<NamespaceWatch> {
        drop(self.write);
        Ok(NamespaceWatch { info: pipe::Receiver::from_owned_fd(self.read)? })
    }
}

/// Waits for the end of one sandbox's PID namespace.
pub(super) struct NamespaceWatch {
    info: pipe::Receiver,
}

impl NamespaceWatch {
    /// Whether the namespace's init is known to have exited within `within`. `false` when that
    /// cannot be known (bubblewrap failed before naming it, no pidfds, the wait timed out): the
    /// caller then looks for leftover processes itself.
    pub(super) async fn ended(self, within: Duration) -> bool {
        tokio::time::timeout(within, self.wait()).await.unwrap_or(false)
    }

    async fn wait(mut self) -> bool {
        let mut report = Vec::new();
        if (&mut self.info).take(INFO_LIMIT).read_to_end(&mut report).await.is_err() {
            return false;
        }
        let Some(init) = init_pid(&report) else { return false };
        match rustix::process::pidfd_open(init, PidfdFlags::NONBLOCK) {
            // Already reaped, so its namespace was emptied before.
            Err(rustix::io::Errno::SRCH) => true,
            Err(_) => false,
            // SAFETY: an `OwnedFd` stays open, and the same descriptor, until the `AsyncFd` drops it.
            Ok(pidfd) => match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
                Ok(pidfd) => pidfd.readable().await.is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// The `child-pid` of bubblewrap's `--info-fd` report.
fn init_pid(report: &[u8]) -> Option<Pid> {
    let report: serde_json::Value = serde_json::from_slice(report).ok()?;
    let pid = i32::try_from(report.get("child-pid")?.as_i64()?).ok()?;
    Pid::from_raw(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_is_read_from_bubblewraps_report() {
        let report = b"{\n    \"child-pid\": 4242,\n    \"cgroup-namespace\": 4026531835\n}\n";
        assert_eq!(init_pid(report), Pid::from_raw(4242));
        assert_eq!(init_pid(b"{}"), None);
        assert_eq!(init_pid(b"{\"child-pid\": 0}"), None);
        assert_eq!(init_pid(b"not json"), None);
    }

    #[tokio::test]
    async fn an_exited_process_is_seen_through_its_pidfd() {
        let pipe = InfoPipe::new().unwrap();
        let mut child = tokio::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let report = format!("{{\"child-pid\": {}}}", child.id().unwrap());
        rustix::io::write(&pipe.write, report.as_bytes()).unwrap();
        let watch = pipe.into_watch().unwrap();
        let ended = tokio::spawn(watch.ended(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ended.is_finished(), "the process still runs");
        child.wait().await.unwrap();
        assert!(ended.await.unwrap());
    }
}
