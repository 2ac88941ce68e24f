//! What a command's first process gets before it becomes the command: death with the server and
//! lowered resource limits.
//!
//! [`ProcessLimits::apply`] runs between `clone` and `exec` in a child that shares the memory
//! of a multi-threaded server (`spawn.rs`), so it makes raw system calls only (`prctl`,
//! `prlimit64`): no allocation, no lock.
//! Doing it there instead of in a re-executed helper saves an `exec` of the whole server binary
//! per command (BENCHMARKS.md, issue #20).

use std::io;

use rustix::process::{Resource, Rlimit, Signal};

use super::ExecLimits;

/// The limits one command's processes run under; `None` leaves a limit as inherited. Also the
/// helper's flags (`sandbox-exec --nproc … --as …`; [`Self::to_args`] writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct ProcessLimits {
    #[arg(long = "nproc")]
    pub processes: Option<u64>,
    #[arg(long = "nofile")]
    pub open_files: Option<u64>,
    #[arg(long = "fsize")]
    pub file_bytes: Option<u64>,
    #[arg(long = "cpu")]
    pub cpu_seconds: Option<u64>,
    #[arg(long = "as")]
    pub address_space: Option<u64>,
}

impl ProcessLimits {
    /// The limits of a command; the process count only for a uid of its own (`RLIMIT_NPROC`
    /// counts every process of the uid, the server's included otherwise).
    pub fn of(limits: &ExecLimits, own_uid: bool) -> Self {
        ProcessLimits {
            processes: own_uid.then_some(limits.max_processes),
            open_files: Some(limits.max_open_files),
            file_bytes: Some(limits.max_file_bytes),
            cpu_seconds: Some(limits.max_cpu_seconds),
            address_space: Some(limits.max_memory_bytes),
        }
    }

    /// Sets the parent-death signal, then every limit. Call it after any change of credentials,
    /// which clears the parent-death signal.
    ///
    /// Async-signal-safe: fit for `pre_exec` and for the child of [`super::spawn::spawn`].
    pub fn apply(&self) -> io::Result<()> {
        // If the server dies, so does the command (bubblewrap adds --die-with-parent below it).
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        let limits = [
            (Resource::Nproc, self.processes),
            (Resource::Nofile, self.open_files),
            (Resource::Fsize, self.file_bytes),
            (Resource::Cpu, self.cpu_seconds),
            (Resource::As, self.address_space),
        ];
        for (resource, value) in limits {
            if let Some(value) = value {
                // CPU: the soft limit sends SIGXCPU (exit 152, reported as such); the hard limit,
                // one second later, SIGKILL for a process that ignores it.
                let maximum = if resource == Resource::Cpu { value.saturating_add(1) } else { value };
                rustix::process::setrlimit(resource, Rlimit { current: Some(value), maximum: Some(maximum) })?;
            }
        }
        Ok(())
    }

    /// The helper's command-line arguments for these limits (parsed back by the derive above).
    pub fn to_args(self) -> Vec<String> {
        let flags = [
            ("--nproc", self.processes),
            ("--nofile", self.open_files),
            ("--fsize", self.file_bytes),
            ("--cpu", self.cpu_seconds),
            ("--as", self.address_space),
        ];
        flags
            .into_iter()
            .filter_map(|(flag, value)| value.map(|v| [flag.to_string(), v.to_string()]))
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_count_is_limited_only_for_a_uid_of_its_own() {
        let limits = ExecLimits::default();
        assert_eq!(ProcessLimits::of(&limits, false).processes, None);
        assert_eq!(ProcessLimits::of(&limits, true).processes, Some(limits.max_processes));
        let args = ProcessLimits::of(&limits, false).to_args();
        assert!(!args.contains(&"--nproc".to_string()));
        assert_eq!(args[..2], ["--nofile".to_string(), limits.max_open_files.to_string()]);
    }

    #[test]
    fn the_helpers_flags_parse_back_to_the_same_limits() {
        #[derive(clap::Parser)]
        struct Helper {
            #[command(flatten)]
            limits: ProcessLimits,
        }
        let limits = ProcessLimits::of(&ExecLimits::default(), true);
        let parsed =
            <Helper as clap::Parser>::try_parse_from(std::iter::once("helper".to_string()).chain(limits.to_args()));
        assert_eq!(parsed.map(|h| h.limits).ok(), Some(limits));
    }

    #[test]
    fn applied_limits_are_those_a_child_sees() {
        // In a child process of its own: the limits must not leak into the test runner.
        let mut child = std::process::Command::new("sh");
        child.args(["-c", "ulimit -n; ulimit -t"]);
        let limits = ProcessLimits { open_files: Some(77), cpu_seconds: Some(9), ..Default::default() };
        // SAFETY: `apply` makes raw system calls only.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut child, move || limits.apply());
        }
        let output = child.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "77\n9\n");
    }
}
