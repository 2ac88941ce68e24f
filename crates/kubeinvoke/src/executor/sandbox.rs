//! How a command is isolated from the server and from other commands.
//!
//! Three layers, strongest first, chosen at startup by probing what the host allows:
//! - **bubblewrap**: new user, PID, mount, IPC, UTS (and optionally network) namespaces; a
//!   read-only system, a private `/tmp`, `/dev` and `/proc`; only the command's own working
//!   directory is writable, mounted at [`SANDBOX_HOME`]. The data directory is not there at all.
//! - **landlock**: where bubblewrap is missing or refused: the filesystem is read-only except the
//!   working directory and its private temp directory.
//! - **none**: nothing but what every mode also gets: resource limits, a process group, and
//!   (when the server runs as root) a uid of its own per command.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ExecLimits;
use super::helper::LANDLOCK_UNAVAILABLE;
use super::process_limits::ProcessLimits;
use super::spawn::ProcessSpec;

/// Inside bubblewrap, the working directory is always here (and is `HOME`).
pub const SANDBOX_HOME: &str = "/home/command";
/// Tools found outside `/usr` (kubectl, helm, jq) are mounted here and put on `PATH`.
const SANDBOX_TOOLS: &str = "/opt/kubeinvoke/bin";
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TOOLS: [&str; 3] = ["kubectl", "helm", "jq"];
/// Files under /etc that hold secrets: replaced by an empty file inside the sandbox.
const SECRET_FILES: [&str; 6] =
    ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/security/opasswd"];
/// Directories under /etc that hold secrets: replaced by an empty tmpfs.
const SECRET_DIRS: [&str; 3] = ["/etc/ssl/private", "/etc/sudoers.d", "/etc/ssh"];

/// The isolation commands actually get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    Bubblewrap,
    Landlock,
    None,
    /// A Pod in the target cluster (the Kubernetes executor): the cluster isolates it.
    #[serde(rename = "kubernetes-pod")]
    KubernetesPod,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::Landlock => "landlock",
            Isolation::None => "none",
            Isolation::KubernetesPod => "kubernetes-pod",
        }
    }
}

/// What the operator must hear when commands run with less than bubblewrap's isolation: that
/// they asked for it, or that the host could not do better (and how to fix that).
fn weaker_isolation_warning(mode: SandboxMode, isolation: Isolation) -> Option<&'static str> {
    match (mode, isolation) {
        (_, Isolation::Bubblewrap) => None,
        (SandboxMode::None, _) => Some(
            "COMMANDS ARE NOT ISOLATED: the sandbox is turned off (--sandbox none); they see this host's files \
             and network as their uid does",
        ),
        (SandboxMode::Landlock, _) => Some(
            "COMMANDS ARE NOT FULLY ISOLATED: Landlock was asked for (--sandbox landlock); \
             --sandbox bubblewrap isolates them fully",
        ),
        _ => Some(
            "COMMANDS ARE NOT FULLY ISOLATED: bubblewrap is unavailable; install it (Debian: bubblewrap) \
             or use --require-sandbox to refuse to start like this",
        ),
    }
}

/// Which isolation to use (`--sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    /// The strongest the host allows.
    Auto,
    Bubblewrap,
    Landlock,
    /// Limits and a process group only. For hosts where nothing else works; says so loudly.
    None,
}

#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    pub mode: SandboxMode,
    /// Whether commands may use the network (kubectl must reach the cluster).
    pub network: bool,
    /// Refuse to start without bubblewrap.
    pub require_full: bool,
    /// First uid of the per-command uid range (used when the server runs as root).
    pub first_uid: u32,
    /// How many uids the range holds; every server on the host may share it.
    pub uid_count: u32,
    /// Where the host-wide uid leases are kept (see `uids.rs`).
    pub uid_locks: std::path::PathBuf,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        SandboxPolicy {
            mode: SandboxMode::Auto,
            network: true,
            require_full: false,
            first_uid: 61000,
            uid_count: 1000,
            uid_locks: super::uids::DEFAULT_LOCK_DIR.into(),
        }
    }
}

/// What one run needs from the sandbox.
pub struct SandboxSpec<'a> {
    pub workdir: &'a Path,
    /// The host directory behind `/tmp`; `None` under bubblewrap, whose `/tmp` is a size-capped
    /// tmpfs of the sandbox's own (see [`Sandbox::needs_tmpdir`]).
    pub tmpdir: Option<&'a Path>,
    pub shell_command: &'a str,
    pub has_kubeconfig: bool,
    pub limits: &'a ExecLimits,
    pub uid: Option<u32>,
    /// Set for the command after the cleared environment (names are lower case, so they never
    /// replace `PATH`, `HOME` or `KUBECONFIG`).
    pub environment: &'a [(String, String)],
    /// Under bubblewrap: the descriptor (close-on-exec in the server) on which bubblewrap names
    /// its PID namespace's init (`--info-fd`; see `namespace.rs`).
    pub info_fd: Option<std::os::fd::RawFd>,
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    isolation: Isolation,
    helper: PathBuf,
    bwrap: Option<PathBuf>,
    shell: PathBuf,
    network: bool,
    /// Paths a command must never see even if they sit under a system directory.
    hidden: Vec<PathBuf>,
    tools: Vec<(String, PathBuf)>,
    /// PATH for commands outside bubblewrap: the server's, then the system directories.
    command_path: std::ffi::OsString,
    lang: std::ffi::OsString,
}

impl Sandbox {
    /// Finds the strongest isolation `policy` allows by really running a probe command in it.
    pub async fn detect(
        policy: SandboxPolicy,
        data_dir: &Path,
        probe_dir: &Path,
        uid: Option<u32>,
    ) -> anyhow::Result<Self> {
        let host_path = std::env::var_os("PATH").unwrap_or_else(|| SYSTEM_PATH.into());
        let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let tools = TOOLS
            .iter()
            .filter_map(|name| {
                std::env::split_paths(&host_path)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
                    .map(|p| (name.to_string(), p.canonicalize().unwrap_or(p)))
            })
            // A command's uid must be able to reach what is mounted for it.
            .filter(|(_, path)| crate::files::reachable_by_anyone(path))
            .collect();
        let mut sandbox = Sandbox {
            isolation: Isolation::None,
            helper: std::env::current_exe()?,
            bwrap: std::env::split_paths(&host_path).map(|d| d.join("bwrap")).find(|p| p.is_file()),
            shell,
            network: policy.network,
            hidden: vec![data_dir.to_path_buf()],
            tools,
            command_path: std::env::join_paths(
                std::env::split_paths(&host_path).chain(std::env::split_paths(SYSTEM_PATH)),
            )
            .unwrap_or_else(|_| SYSTEM_PATH.into()),
            lang: std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        };
        let candidates: &[Isolation] = match policy.mode {
            SandboxMode::Auto => &[Isolation::Bubblewrap, Isolation::Landlock, Isolation::None],
            SandboxMode::Bubblewrap => &[Isolation::Bubblewrap],
            SandboxMode::Landlock => &[Isolation::Landlock],
            SandboxMode::None => &[Isolation::None],
        };
        let mut refusals = Vec::new();
        for &candidate in candidates {
            sandbox.isolation = candidate;
            match sandbox.probe(probe_dir, uid).await {
                Ok(()) => break,
                Err(why) => {
                    refusals.push(format!("{}: {why}", candidate.as_str()));
                    sandbox.isolation = Isolation::None;
                }
            }
        }
        let wanted_but_missing = policy.mode != SandboxMode::Auto && !candidates.contains(&sandbox.isolation);
        if wanted_but_missing || (policy.require_full && sandbox.isolation != Isolation::Bubblewrap) {
            anyhow::bail!(
                "the requested command isolation is not available on this host ({})",
                if refusals.is_empty() { "full isolation needs bubblewrap".to_string() } else { refusals.join("; ") }
            );
        }
        if let Some(warning) = weaker_isolation_warning(policy.mode, sandbox.isolation) {
            tracing::warn!(isolation = sandbox.isolation.as_str(), refused = refusals.join("; "), "{warning}");
        }
        Ok(sandbox)
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether a run needs a host directory for its `/tmp` (bubblewrap mounts a tmpfs instead).
    pub fn needs_tmpdir(&self) -> bool {
        self.isolation != Isolation::Bubblewrap
    }

    async fn probe(&self, probe_dir: &Path, uid: Option<u32>) -> Result<(), String> {
        if self.isolation == Isolation::Bubblewrap && self.bwrap.is_none() {
            return Err("bwrap is not installed".into());
        }
        let workdir = probe_dir.join("work");
        let tmpdir = probe_dir.join("tmp");
        std::fs::create_dir_all(probe_dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(probe_dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        for dir in [&workdir, &tmpdir] {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            if let Some(uid) = uid {
                rustix::fs::chown(dir, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(uid)))
                    .map_err(|e| e.to_string())?;
            }
        }
        let limits = ExecLimits::default();
        let spec = SandboxSpec {
            workdir: &workdir,
            tmpdir: Some(&tmpdir),
            shell_command: "exit 0",
            has_kubeconfig: false,
            limits: &limits,
            uid,
            environment: &[],
            info_fd: None,
        };
        let (status, output) = super::spawn::output(&self.build(&spec, true)).await.map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(probe_dir);
        match status.code() {
            Some(0) => Ok(()),
            Some(LANDLOCK_UNAVAILABLE) => Err("the kernel does not fully enforce Landlock".into()),
            _ => Err(format!("probe failed ({status}): {}", String::from_utf8_lossy(&output).trim())),
        }
    }

    /// The process to spawn for one run, with a cleared environment. Under bubblewrap and
    /// without isolation the server starts it directly: the child switches to the run's uid and
    /// applies `ProcessLimits` between clone and exec (see `spawn.rs`). Under Landlock the
    /// `sandbox-exec` helper does that (see `helper.rs`), then execs the shell.
    pub fn command(&self, run: &SandboxSpec<'_>) -> ProcessSpec {
        self.build(run, false)
    }

    /// [`Self::command`]; with `landlock_probe`, the helper only reports whether Landlock is enforced.
    fn build(&self, run: &SandboxSpec<'_>, landlock_probe: bool) -> ProcessSpec {
        let limits = ProcessLimits::of(run.limits, run.uid.is_some());
        let mut command = match self.isolation {
            Isolation::Bubblewrap => {
                let mut command = ProcessSpec::new(self.bwrap.as_ref().expect("probed"));
                command.args(self.bwrap_args(run));
                command
            }
            Isolation::Landlock => {
                let mut command = ProcessSpec::new(&self.helper);
                command.arg("sandbox-exec").args(limits.to_args());
                if let Some(uid) = run.uid {
                    command.args(["--uid", &uid.to_string(), "--gid", &uid.to_string()]);
                }
                self.landlock_args(&mut command, run);
                if landlock_probe {
                    command.arg("--landlock-probe");
                }
                command.arg("--").arg(&self.shell);
                command
            }
            // A local sandbox is never a Pod; the arm only keeps the match exhaustive.
            Isolation::None | Isolation::KubernetesPod => ProcessSpec::new(&self.shell),
        };
        if self.isolation != Isolation::Landlock {
            if let Some(uid) = run.uid {
                command.uid(uid);
            }
            command.limits(limits);
            if let Some(fd) = run.info_fd.filter(|_| self.isolation == Isolation::Bubblewrap) {
                command.keep_fd(fd);
            }
        }
        command.env("LANG", &self.lang);
        for (key, value) in run.environment {
            command.env(key, value);
        }
        let home = match self.isolation {
            Isolation::Bubblewrap => {
                let path = if self.tools.is_empty() {
                    SYSTEM_PATH.to_string()
                } else {
                    format!("{SANDBOX_TOOLS}:{SYSTEM_PATH}")
                };
                command.env("PATH", path).env("TMPDIR", "/tmp").current_dir("/");
                Path::new(SANDBOX_HOME)
            }
            _ => {
                command.env("PATH", &self.command_path).current_dir(run.workdir);
                if let Some(tmpdir) = run.tmpdir {
                    command.env("TMPDIR", tmpdir);
                }
                run.workdir
            }
        };
        command.env("HOME", home);
        if run.has_kubeconfig {
            command.env("KUBECONFIG", home.join(".kube/config"));
        }
        command.arg("-c").arg(run.shell_command);
        command
    }

    /// `sandbox-exec`'s Landlock rules: read-write only the run's directories and a few devices.
    fn landlock_args(&self, command: &mut ProcessSpec, run: &SandboxSpec<'_>) {
        command.arg("--landlock-rw").arg(run.workdir);
        if let Some(tmpdir) = run.tmpdir {
            command.arg("--landlock-rw").arg(tmpdir);
        }
        for dev in ["/dev/null", "/dev/zero", "/dev/full"] {
            command.arg("--landlock-rw").arg(dev);
        }
        for ro in ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/proc", "/dev"] {
            if Path::new(ro).exists() {
                command.arg("--landlock-ro").arg(ro);
            }
        }
        for (_, tool) in &self.tools {
            command.arg("--landlock-ro").arg(tool);
        }
    }

    fn bwrap_args(&self, run: &SandboxSpec<'_>) -> Vec<std::ffi::OsString> {
        let tmp_size = run.limits.max_workdir_bytes.to_string();
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |parts: &[&dyn AsRef<std::ffi::OsStr>]| args.extend(parts.iter().map(|p| p.as_ref().to_owned()));
        if let Some(fd) = run.info_fd {
            push(&[&"--info-fd", &fd.to_string()]);
        }
        push(&[&"--unshare-all", &"--unshare-user", &"--disable-userns", &"--die-with-parent", &"--new-session"]);
        push(&[&"--hostname", &"kubeinvoke"]);
        if self.network {
            push(&[&"--share-net"]);
        }
        push(&[&"--ro-bind", &"/usr", &"/usr"]);
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            let path = Path::new(top);
            if let Ok(target) = std::fs::read_link(path) {
                push(&[&"--symlink", &target, &top]);
            } else if path.is_dir() {
                push(&[&"--ro-bind", &top, &top]);
            }
        }
        push(&[&"--ro-bind", &"/etc", &"/etc"]);
        for file in SECRET_FILES.iter().filter(|f| Path::new(f).exists()) {
            push(&[&"--ro-bind", &"/dev/null", file]);
        }
        for dir in SECRET_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
            push(&[&"--tmpfs", dir]);
        }
        for hidden in self.hidden.iter().filter(|h| h.starts_with("/usr") || h.starts_with("/etc")) {
            push(&[&"--tmpfs", hidden]);
        }
        push(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--size", &tmp_size, &"--tmpfs", &"/tmp"]);
        for (name, tool) in &self.tools {
            if !tool.starts_with("/usr") {
                push(&[&"--ro-bind", tool, &Path::new(SANDBOX_TOOLS).join(name)]);
            }
        }
        push(&[&"--bind", &run.workdir, &SANDBOX_HOME, &"--remount-ro", &"/", &"--chdir", &SANDBOX_HOME, &"--"]);
        push(&[&self.shell]);
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_says_whether_the_operator_chose_weaker_isolation_or_the_host_forced_it() {
        for mode in [SandboxMode::Auto, SandboxMode::Bubblewrap] {
            assert_eq!(weaker_isolation_warning(mode, Isolation::Bubblewrap), None);
        }
        let off = weaker_isolation_warning(SandboxMode::None, Isolation::None).unwrap();
        assert!(off.contains("turned off (--sandbox none)"), "{off}");
        assert!(!off.contains("unavailable"), "it was asked for, not missing: {off}");
        let chosen = weaker_isolation_warning(SandboxMode::Landlock, Isolation::Landlock).unwrap();
        assert!(chosen.contains("Landlock was asked for") && !chosen.contains("unavailable"), "{chosen}");
        for fallback in [Isolation::Landlock, Isolation::None] {
            let forced = weaker_isolation_warning(SandboxMode::Auto, fallback).unwrap();
            assert!(forced.contains("bubblewrap is unavailable; install it"), "{forced}");
        }
    }
}
