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
                let waited = self.child.wait().await;
                drain_remaining(self.output, self.log, &mut chunk).await;
                match waited {
                    // It had exited by itself (not by our kill) before the stop or the deadline
                    // reached it: it ran to its end, and its exit code is what happened.
                    Ok(status) if status.code().is_some() && stop.may_have_been_outrun() => {
                        Supervised::Ended(Some(Ok(status)))
                    }
                    _ => Supervised::Stopped(stop),
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::StopReason;
    use crate::executor::spawn::{ProcessSpec, Stdio, spawn};

    /// Supervises `sh -c script` with a stop asked for `stop_after` after its start.
    async fn supervised(script: &str, stop_after: Duration) -> Supervised {
        let dir = tempfile::tempdir().unwrap();
        let dirs = CommandDirs::new(dir.path(), "c", false);
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut spec = ProcessSpec::new("/bin/sh");
        spec.arg("-c").arg(script);
        let mut child = spawn(&spec, Stdio::null_in_shared_out(write_end).unwrap()).unwrap();
        let group = ProcessGroup { pid: child.id(), uid: None };
        let mut output = pipe::Receiver::from_owned_fd(read_end).unwrap();
        let limits = ExecLimits::default();
        let mut log = CommandOutput::create(None, limits.max_output_bytes, limits.log_cap, &[]).await;
        let (stop, asked) = tokio::sync::watch::channel(None);
        tokio::time::sleep(stop_after).await;
        stop.send(Some(StopReason::Fenced)).unwrap();
        let running = Running {
            child: &mut child,
            group: &group,
            output: &mut output,
            log: &mut log,
            dirs: &dirs,
            limits: &limits,
        };
        running.supervise(&mut StopSignal::new(asked)).await
    }

    #[tokio::test]
    async fn a_command_that_exited_before_a_stop_reached_it_is_reported_by_its_exit_code() {
        // The command has exited (unreaped) when supervision starts with the stop already asked:
        // either may be seen first, and either way the command ran to its end.
        for _ in 0..20 {
            match supervised("exit 3", Duration::from_millis(50)).await {
                Supervised::Ended(Some(Ok(status))) => assert_eq!(status.code(), Some(3)),
                Supervised::Ended(other) => panic!("ended without its status: {other:?}"),
                Supervised::Stopped(_) => panic!("a command that had exited was reported as stopped"),
            }
        }
    }

    #[tokio::test]
    async fn a_command_the_stop_reaches_while_it_runs_is_stopped() {
        assert!(matches!(supervised("sleep 30", Duration::ZERO).await, Supervised::Stopped(Stop::Requested(_))));
    }
}
