//! How a run's end reads in its result: why it was stopped, what limit it hit, its exit code.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::command::{FailureReason, Outcome};
use crate::executor::{ExecLimits, StopReason};

/// Why a run was stopped before its command ended by itself.
pub(super) enum Stop {
    Timeout,
    /// The working directory grew past `max_workdir_bytes`.
    WorkdirLimit,
    /// The data directory's disk filled up, so the output could no longer be kept.
    OutOfSpace,
    Requested(StopReason),
}

impl Stop {
    /// Whether the command may have ended by itself in the instant before this stop: a stop
    /// from outside (cancel, fence, shutdown) or the deadline. A limit the command broke, or
    /// output that could not be kept, fails it whatever it did next.
    pub(super) fn may_have_been_outrun(&self) -> bool {
        matches!(self, Stop::Requested(_) | Stop::Timeout)
    }

    /// The failure it stores and the line it adds to the logs.
    pub(super) fn failure(self, limits: &ExecLimits) -> (FailureReason, String) {
        match self {
            Stop::Timeout => (
                FailureReason::Timeout,
                format!("the command timed out after {} and was killed", humantime::format_duration(limits.timeout)),
            ),
            Stop::Requested(StopReason::Shutdown) => (
                FailureReason::ServerShutdown,
                "the server shut down before the command finished; it was killed".to_string(),
            ),
            Stop::Requested(StopReason::Cancel(by)) => {
                let note = format!("canceled by {by}; the command was killed");
                (FailureReason::Canceled(by), note)
            }
            Stop::Requested(StopReason::Fenced) => (
                FailureReason::WorkerLost,
                "this replica lost the database and could not renew its lease; the command was killed".to_string(),
            ),
            Stop::OutOfSpace => (
                FailureReason::DataDirectoryFull,
                "the server's data directory ran out of space, so the command's output could no longer be kept; the \
                 command was killed"
                    .to_string(),
            ),
            Stop::WorkdirLimit => (
                FailureReason::WorkingDirectoryLimit,
                format!(
                    "the working directory grew past its limit of {} bytes; the command was killed",
                    limits.max_workdir_bytes
                ),
            ),
        }
    }
}

/// A line for the logs when the exit status or the output shows that a resource limit was hit
/// (a limit is often hit by one process of a script that then goes on).
pub(super) fn limit_note(exit_code: i32, head: &[u8], limits: &ExecLimits) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if exit_code == 128 + 24 || has(&["CPU time limit exceeded"]) {
        Some(format!("the command exceeded its CPU time limit of {} s (SIGXCPU)", limits.max_cpu_seconds))
    } else if exit_code == 128 + 25 || has(&["File size limit exceeded", "File too large"]) {
        Some(format!("a file reached the size limit of {} bytes (SIGXFSZ)", limits.max_file_bytes))
    } else if has(&["fork: retry", "fork: Resource temporarily unavailable"]) {
        Some(format!("the command hit its process limit of {}", limits.max_processes))
    } else if has(&["Cannot allocate memory", "cannot allocate", "MemoryError", "memory exhausted", "out of memory"]) {
        Some(format!("the command hit its memory limit of {} bytes", limits.max_memory_bytes))
    } else if has(&["Too many open files"]) {
        Some(format!("the command hit its open files limit of {}", limits.max_open_files))
    } else {
        None
    }
}

/// The exit code a shell would report: the code, or 128 + N for death by signal N.
pub(super) fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// A run that never got as far as its command.
pub(super) fn start_failed(detail: String) -> Outcome {
    tracing::warn!(%detail, "command could not be started");
    Outcome::Failed { reason: FailureReason::StartFailed(detail.clone()), logs: format!("[kubeinvoke] {detail}\n") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> ExecLimits {
        ExecLimits {
            timeout: Duration::from_secs(90),
            max_cpu_seconds: 7,
            max_file_bytes: 1000,
            max_processes: 64,
            max_memory_bytes: 2048,
            max_open_files: 32,
            max_workdir_bytes: 4096,
            ..ExecLimits::default()
        }
    }

    #[test]
    fn each_stop_names_its_reason_and_says_the_command_was_killed() {
        let (reason, note) = Stop::Timeout.failure(&limits());
        assert!(matches!(reason, FailureReason::Timeout));
        assert_eq!(note, "the command timed out after 1m 30s and was killed");
        let (reason, note) = Stop::WorkdirLimit.failure(&limits());
        assert!(matches!(reason, FailureReason::WorkingDirectoryLimit));
        assert!(note.contains("limit of 4096 bytes"), "{note}");
        let (reason, note) = Stop::OutOfSpace.failure(&limits());
        assert!(matches!(reason, FailureReason::DataDirectoryFull));
        assert!(note.contains("ran out of space") && note.contains("killed"), "{note}");
        let (reason, note) = Stop::Requested(StopReason::Shutdown).failure(&limits());
        assert!(matches!(reason, FailureReason::ServerShutdown));
        assert!(note.contains("server shut down"), "{note}");
        let (reason, note) = Stop::Requested(StopReason::Cancel("app-1".into())).failure(&limits());
        assert!(matches!(reason, FailureReason::Canceled(by) if by == "app-1"));
        assert_eq!(note, "canceled by app-1; the command was killed");
    }

    #[test]
    fn limits_are_named_from_the_signal_or_what_the_command_printed() {
        let l = limits();
        let note = |code, out: &str| limit_note(code, out.as_bytes(), &l);
        assert_eq!(note(152, "").unwrap(), "the command exceeded its CPU time limit of 7 s (SIGXCPU)");
        assert!(note(1, "bash: CPU time limit exceeded").unwrap().contains("CPU time"));
        assert_eq!(note(153, "").unwrap(), "a file reached the size limit of 1000 bytes (SIGXFSZ)");
        assert!(note(1, "write error: File too large").unwrap().contains("size limit of 1000"));
        assert!(
            note(0, "bash: fork: retry: Resource temporarily unavailable").unwrap().contains("process limit of 64")
        );
        assert!(note(1, "MemoryError").unwrap().contains("memory limit of 2048"));
        assert!(note(1, "sh: Too many open files").unwrap().contains("open files limit of 32"));
        assert_eq!(note(0, "all fine"), None);
        assert_eq!(note(1, "exit 1 is not a limit"), None);
    }

    #[test]
    fn exit_codes_read_as_a_shell_reports_them() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137, "killed by SIGKILL");
    }

    #[test]
    fn a_start_failure_is_its_reason_and_one_line_of_logs() {
        let Outcome::Failed { reason, logs } = start_failed("no pipe".into()) else { panic!("not failed") };
        assert!(matches!(reason, FailureReason::StartFailed(d) if d == "no pipe"));
        assert_eq!(logs, "[kubeinvoke] no pipe\n");
    }
}
