//! The resource limits of one command, and how a cluster tightens the server's.

use std::time::Duration;

use serde::Deserialize;

use crate::context::ContextLimits;

/// Limits every command runs under. The server's values are defaults and ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    pub timeout: Duration,
    /// Bytes of merged stdout/stderr kept in `logs`.
    pub log_cap: usize,
    pub context: ContextLimits,
    /// Processes the command's user may have at once (`RLIMIT_NPROC`).
    pub max_processes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// Largest file a process may write (`RLIMIT_FSIZE`).
    pub max_file_bytes: u64,
    /// CPU seconds per process (`RLIMIT_CPU`).
    pub max_cpu_seconds: u64,
    /// Address space per process (`RLIMIT_AS`; cgroup v2 memory is not delegated on every host).
    pub max_memory_bytes: u64,
    /// Disk used by the working directory, checked while the command runs.
    pub max_workdir_bytes: u64,
    /// Output kept in full for the live-logs endpoint (`logs` in the result stays `log_cap`).
    pub max_output_bytes: u64,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            timeout: Duration::from_secs(3600),
            log_cap: 512 * 1024,
            context: ContextLimits::default(),
            max_processes: 256,
            max_open_files: 1024,
            max_file_bytes: 1 << 30,
            max_cpu_seconds: 3600,
            max_memory_bytes: 4 << 30,
            max_workdir_bytes: 1 << 30,
            max_output_bytes: 64 << 20,
        }
    }
}

/// `properties.commandLimits` of a cluster: lower limits for its commands. Values above the
/// server's are capped to the server's, so a cluster owner cannot loosen what the operator set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitOverrides {
    pub timeout_seconds: Option<u64>,
    pub log_bytes: Option<u64>,
    pub max_processes: Option<u64>,
    pub max_open_files: Option<u64>,
    pub max_file_bytes: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub workdir_bytes: Option<u64>,
}

impl LimitOverrides {
    /// The property's name inside a cluster's `properties`.
    pub const PROPERTY: &'static str = "commandLimits";

    /// Parses the property, refusing unknown keys and zero values.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let parsed: LimitOverrides = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let values = [
            parsed.timeout_seconds,
            parsed.log_bytes,
            parsed.max_processes,
            parsed.max_open_files,
            parsed.max_file_bytes,
            parsed.cpu_seconds,
            parsed.memory_bytes,
            parsed.workdir_bytes,
        ];
        if values.iter().flatten().any(|v| *v == 0) {
            return Err("limits must be positive integers".into());
        }
        Ok(parsed)
    }
}

impl ExecLimits {
    /// These limits, lowered wherever the cluster asks for less.
    pub fn tightened_by(mut self, cluster: &LimitOverrides) -> Self {
        fn lower(current: &mut u64, wanted: Option<u64>) {
            if let Some(wanted) = wanted {
                *current = (*current).min(wanted);
            }
        }
        let mut timeout = self.timeout.as_secs();
        lower(&mut timeout, cluster.timeout_seconds);
        self.timeout = self.timeout.min(Duration::from_secs(timeout));
        let mut log_cap = self.log_cap as u64;
        lower(&mut log_cap, cluster.log_bytes);
        self.log_cap = log_cap as usize;
        lower(&mut self.max_processes, cluster.max_processes);
        lower(&mut self.max_open_files, cluster.max_open_files);
        lower(&mut self.max_file_bytes, cluster.max_file_bytes);
        lower(&mut self.max_cpu_seconds, cluster.cpu_seconds);
        lower(&mut self.max_memory_bytes, cluster.memory_bytes);
        lower(&mut self.max_workdir_bytes, cluster.workdir_bytes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_can_only_lower_limits() {
        let server = ExecLimits::default();
        let cluster = LimitOverrides::parse(&serde_json::json!({"timeoutSeconds": 5, "maxProcesses": 100000})).unwrap();
        let effective = server.tightened_by(&cluster);
        assert_eq!(effective.timeout, Duration::from_secs(5));
        assert_eq!(effective.max_processes, server.max_processes);
        assert!(LimitOverrides::parse(&serde_json::json!({"bogus": 1})).is_err());
        assert!(LimitOverrides::parse(&serde_json::json!({"cpuSeconds": 0})).is_err());
        assert!(LimitOverrides::parse(&serde_json::json!({"cpuSeconds": -1})).is_err());
    }
}
