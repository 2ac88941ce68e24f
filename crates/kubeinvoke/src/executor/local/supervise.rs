//! Watching a started command: its output into the result, its end, its deadline, a stop
//! request and its working directory's size, until one of them decides the run is over.

use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::command_dirs::CommandDirs;
use super::ending::Stop;
use crate::executor::output::CommandOutput;
use crate::executor::spawn::Child;
use crate::executor::uids::kill_uid;
use crate::executor::{ExecLimits, StopSignal};

/// How long output is still read after the command's main process has exited.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often the working directory's size is checked.
const DISK_CHECK_PERIOD: Duration = Duration::from_millis(500);

/// A command's process group (and uid, when it has its own and its processes can leave the
/// group); killed however the run ends.
pub(super) struct ProcessGroup {
    pub pid: Pid,
    pub uid: Option<u32>,
}

impl ProcessGroup {
    pub(super) fn kill(&self) {
        // ESRCH (already gone) is the normal case.
        let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
        if let Some(uid) = self.uid {
            kill_uid(uid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one running command has to be watched through.
pub(super) struct Running<'a> {
    pub child: &'a mut Child,
    pub group: &'a ProcessGroup,
    pub output: &'a mut pipe::Receiver,
    pub log: &'a mut CommandOutput,
    pub dirs: &'a CommandDirs,
    pub limits: &'a ExecLimits,
}

/// How supervision ended.
pub(super) enum Supervised {
    /// The command ended by itself: its main process's status (`Err` when it could not be
    /// read: the run then fails, it never "exits 0"), or `None` when it is still to be awaited.
    Ended(Option<Result<ExitStatus, String>>),
    /// It was stopped; its process group is killed and its output drained.
    Stopped(Stop),
}

impl Running<'_> {
    /// Reads output until the command is over or must be stopped; whatever it left running is
    /// killed either way.
    pub(super) async fn supervise(self, stop: &mut StopSignal) -> Supervised {
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::sleep(self.limits.timeout);
        tokio::pin!(deadline);
        // The first check one period in: at the start the directory holds only what was unpacked.
        let mut disk_check =
            tokio::time::interval_at(tokio::time::Instant::now() + DISK_CHECK_PERIOD, DISK_CHECK_PERIOD);
        let mut status: Option<Result<ExitStatus, String>> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut output_closed = false;
        let stopped = loop {
            let drain = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = self.output.read(&mut chunk), if !output_closed => match read {
                    // Every writer is gone, but the main process may not have exited yet (its
                    // last child closes the pipe first): its status is still awaited, never
                    // taken from a kill.
                    Ok(0) | Err(_) if status.is_some() => break None,
                    Ok(0) | Err(_) => output_closed = true,
                    Ok(n) => {
                        self.log.push(&chunk[..n]).await;
                        if self.log.out_of_space() {
                            break Some(Stop::OutOfSpace);
                        }
                    }
                },
                waited = self.child.wait(), if status.is_none() => {
                    status = Some(waited.map_err(|e| e.to_string()));
                    if output_closed {
                        break None;
                    }
                    // The main process is done: end whatever it left running, then drain the pipe.
                    self.group.kill();
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                _ = drain => break None,
                _ = &mut deadline, if status.is_none() => break Some(Stop::Timeout),
                reason = stop.stopped(), if status.is_none() => break Some(Stop::Requested(reason)),
                _ = disk_check.tick(), if status.is_none() => {
                    if self.dirs.disk_usage().await > self.limits.max_workdir_bytes {
                        break Some(Stop::WorkdirLimit);
                    }
                }
            }
        };
        self.group.kill();
        match stopped {
            None => Supervised::Ended(status),
            Some(stop) => {
                let _ = self.child.wait().await;
                drain_remaining(self.output, self.log, &mut chunk).await;
                Supervised::Stopped(stop)
            }
        }
    }
}

async fn drain_remaining(reader: &mut pipe::Receiver, log: &mut CommandOutput, chunk: &mut [u8]) {
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        while let Ok(n) = reader.read(chunk).await {
            if n == 0 {
                break;
            }
            log.push(&chunk[..n]).await;
        }
    })
    .await;
}
