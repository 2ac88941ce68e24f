//! The local executor: each command runs on this host through the [`Sandbox`], with a uid of
//! its own (when the server is root), in a fresh working directory removed when it ends.
//!
//! stdout and stderr share one pipe, so `logs` keeps the order in which the command wrote them.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::namespace::InfoPipe;
use super::output::CommandOutput;
use super::sandbox::{RunSpec, Sandbox, SandboxPolicy};
use super::spawn::{Stdio, spawn};
use super::uids::{UidLease, UidLeases, kill_uid};
use super::{Executor, Isolation, Job, StopReason, StopSignal};
use crate::command::{FailureReason, Outcome};
use crate::files::write_private;

/// How long output is still read after the command's main process has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often uids of dead servers are checked for leftover processes.
const ORPHAN_SWEEP_PERIOD: Duration = Duration::from_secs(60);
/// How often the working directory's size is checked.
const DISK_CHECK_PERIOD: Duration = Duration::from_millis(500);

pub struct LocalExecutor {
    runs_dir: PathBuf,
    sandbox: Sandbox,
    uids: Option<Arc<UidLeases>>,
}

/// The directories of one run, side by side in the runs directory (0711, so neither can be
/// listed or entered but by its owner): `<runs>/<id>` (the working directory) and, unless
/// bubblewrap gives the run a tmpfs, `<runs>/<id>.tmp` for its `/tmp`. No parent of their own
/// and no unused one: on ext4 each directory costs a `mkdir` and an `rmdir` of 75-250 µs per
/// command (BENCHMARKS.md).
#[derive(Clone)]
struct RunDirs {
    home: PathBuf,
    tmp: Option<PathBuf>,
}

impl RunDirs {
    fn new(runs_dir: &Path, id: &str, with_tmp: bool) -> Self {
        RunDirs { home: runs_dir.join(id), tmp: with_tmp.then(|| runs_dir.join(format!("{id}.tmp"))) }
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.home).chain(&self.tmp)
    }

    /// Disk blocks used under the run's directories, without following links.
    async fn disk_usage(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            use std::os::unix::fs::MetadataExt;
            let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
            let own = meta.blocks() * 512;
            if !meta.is_dir() {
                return own;
            }
            let children = fs::read_dir(path).map(|e| e.flatten().map(|e| walk(&e.path())).sum()).unwrap_or(0);
            own + children
        }
        let dirs = self.clone();
        tokio::task::spawn_blocking(move || dirs.all().map(|d| walk(d)).sum()).await.unwrap_or(0)
    }

    /// Removes both, whatever the command did to their permissions, before the result is stored
    /// (the working directory holds the kubeconfig).
    async fn remove(self) {
        let result = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for dir in self.all() {
                // A command may have removed its own permissions; the server can restore them.
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
                match fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => failed.push((dir.clone(), e)),
                    _ => {}
                }
            }
            failed
        })
        .await;
        for (dir, e) in result.unwrap_or_default() {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a working directory");
        }
    }
}

impl LocalExecutor {
    /// Prepares the runs directory, removing what a previous process left behind, and finds
    /// the strongest isolation the host allows under `policy`.
    pub async fn new(data_dir: &Path, policy: SandboxPolicy, max_running: usize) -> anyhow::Result<Self> {
        let is_root = rustix::process::geteuid().is_root();
        let runs_dir = runs_dir_for(data_dir, is_root)?;
        let uids = match is_root {
            true => Some(UidLeases::open(&policy.uid_locks, policy.first_uid, policy.uid_count)?),
            false => None,
        };
        if let Some(uids) = &uids {
            // Outside bubblewrap's PID namespace, a crashed server's commands can leave processes
            // behind: they end now, and every minute, whichever server left them.
            let sweeper = uids.clone();
            tokio::task::spawn_blocking(move || sweeper.sweep_orphans()).await?;
            tokio::spawn(sweep_orphans_periodically(Arc::downgrade(uids)));
        }
        if max_running > policy.uid_count as usize && uids.is_some() {
            tracing::warn!(
                max_running,
                uid_count = policy.uid_count,
                "fewer command uids than running commands; commands will wait for uids"
            );
        }
        let probe_lease = match &uids {
            Some(uids) => Some(uids.acquire("sandbox probe").await?),
            None => None,
        };
        let probe_uid = probe_lease.as_ref().map(UidLease::uid);
        let sandbox = Sandbox::detect(policy, data_dir, &runs_dir.join("probe"), probe_uid).await;
        if let Some(lease) = probe_lease {
            lease.release().await;
        }
        let sandbox = sandbox?;
        if !is_root {
            tracing::warn!("not running as root: commands share the server's uid and have no process-count limit");
        }
        tracing::info!(runs_dir = %runs_dir.display(), isolation = sandbox.isolation().as_str(), "local executor ready");
        Ok(LocalExecutor { runs_dir, sandbox, uids })
    }

    /// The isolation every run gets (the benchmarks spawn its bare command as a baseline).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Creates the run's directories, the context and kubeconfig in the working directory, owned by `uid`.
    fn prepare(dirs: &RunDirs, job: &Job, uid: Option<u32>) -> Result<(), String> {
        let mkdir = |dir: &Path, mode: u32| {
            fs::DirBuilder::new()
                .create(dir)
                .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(mode)))
                .map_err(|e| format!("creating {}: {e}", dir.display()))
        };
        for dir in dirs.all() {
            mkdir(dir, 0o700)?;
        }
        crate::context::extract(&job.context, &dirs.home, job.limits.context)
            .map_err(|e| format!("unpacking the context: {e}"))?;
        if let Some(kubeconfig) = &job.kubeconfig {
            let kube_dir = dirs.home.join(".kube");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&kube_dir)
                .map_err(|e| format!("creating .kube: {e}"))?;
            write_private(&kube_dir.join("config"), kubeconfig)
                .map_err(|e| format!("writing the kubeconfig: {e:#}"))?;
        }
        if let Some(uid) = uid {
            for dir in dirs.all() {
                chown_tree(dir, uid).map_err(|e| format!("handing {} to uid {uid}: {e}", dir.display()))?;
            }
        }
        Ok(())
    }

    async fn execute(&self, job: &Job, dirs: &RunDirs, uid: Option<u32>, mut stop: StopSignal) -> Ended {
        let limits = &job.limits;
        let (read_end, write_end) = match output_pipe() {
            Ok(pair) => pair,
            Err(e) => return start_failed(format!("creating the output pipe: {e}")).into(),
        };
        // Under bubblewrap: where it names its PID namespace's init, to know when the sandbox is over.
        let info = match self.sandbox.isolation() {
            Isolation::Bubblewrap => match InfoPipe::new() {
                Ok(info) => Some(info),
                Err(e) => return start_failed(format!("creating the sandbox's info pipe: {e}")).into(),
            },
            _ => None,
        };
        let spec = RunSpec {
            workdir: &dirs.home,
            tmpdir: dirs.tmp.as_deref(),
            shell_command: &job.command,
            has_kubeconfig: job.kubeconfig.is_some(),
            limits,
            uid,
            environment: &job.environment,
            info_fd: info.as_ref().map(InfoPipe::child_fd),
        };
        let stdio = match Stdio::null_in_shared_out(write_end) {
            Ok(stdio) => stdio,
            Err(e) => return start_failed(format!("preparing the command's stdio: {e}")).into(),
        };
        // Our copies of the pipe's write end are closed once it runs: EOF means "all writers gone".
        let mut child = match spawn(&self.sandbox.command(&spec), stdio) {
            Ok(child) => child,
            Err(e) => return start_failed(format!("starting the command: {e}")).into(),
        };
        let watch = info.map(InfoPipe::into_watch).and_then(Result::ok);
        // Under bubblewrap the command cannot leave its PID namespace, which dies with bubblewrap:
        // killing bubblewrap's group is enough, without scanning /proc for the uid's processes.
        let escapes_group = self.sandbox.isolation() != Isolation::Bubblewrap;
        let group = ProcessGroup { pid: child.id(), uid: uid.filter(|_| escapes_group) };
        let mut reader = match pipe::Receiver::from_owned_fd(read_end) {
            Ok(reader) => reader,
            Err(e) => return start_failed(format!("reading the output pipe: {e}")).into(),
        };

        let mut log =
            CommandOutput::create(job.output.as_deref(), limits.max_output_bytes, limits.log_cap, &job.masked).await;
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::sleep(limits.timeout);
        tokio::pin!(deadline);
        // The first check one period in: at the start the directory holds only what was unpacked.
        let mut disk_check =
            tokio::time::interval_at(tokio::time::Instant::now() + DISK_CHECK_PERIOD, DISK_CHECK_PERIOD);
        // `Err` when the process's end could not be read: the run then fails, it never "exits 0".
        let mut status: Option<Result<ExitStatus, String>> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut output_closed = false;
        let stop = loop {
            let drain = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = reader.read(&mut chunk), if !output_closed => match read {
                    // Every writer is gone, but the main process may not have exited yet (its
                    // last child closes the pipe first): its status is still awaited, never
                    // taken from a kill.
                    Ok(0) | Err(_) if status.is_some() => break None,
                    Ok(0) | Err(_) => output_closed = true,
                    Ok(n) => log.push(&chunk[..n]).await,
                },
                waited = child.wait(), if status.is_none() => {
                    status = Some(waited.map_err(|e| e.to_string()));
                    if output_closed {
                        break None;
                    }
                    // The main process is done: end whatever it left running, then drain the pipe.
                    group.kill();
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                _ = drain => break None,
                _ = &mut deadline, if status.is_none() => break Some(Stop::Timeout),
                reason = stop.stopped(), if status.is_none() => break Some(Stop::Requested(reason)),
                _ = disk_check.tick(), if status.is_none() => {
                    if dirs.disk_usage().await > limits.max_workdir_bytes {
                        break Some(Stop::DiskFull);
                    }
                }
            }
        };
        group.kill();
        if let Some(stop) = stop {
            let _ = child.wait().await;
            drain_remaining(&mut reader, &mut log, &mut chunk).await;
            let (reason, note) = match stop {
                Stop::Timeout => (
                    FailureReason::Timeout,
                    format!(
                        "the command timed out after {} and was killed",
                        humantime::format_duration(limits.timeout)
                    ),
                ),
                Stop::Requested(StopReason::Shutdown) => (
                    FailureReason::ServerShutdown,
                    "the server shut down before the command finished; it was killed".to_string(),
                ),
                Stop::Requested(StopReason::Cancel(by)) => {
                    (FailureReason::Canceled(by.clone()), format!("canceled by {by}; the command was killed"))
                }
                Stop::DiskFull => (
                    FailureReason::WorkingDirectoryLimit,
                    format!(
                        "the working directory grew past its limit of {} bytes; the command was killed",
                        limits.max_workdir_bytes
                    ),
                ),
            };
            // A limit hit on the way (a fork bomb that then runs out its time) is named too.
            let note = match limit_note(0, log.head(), limits) {
                Some(limit) => format!("{limit}; then {note}"),
                None => note,
            };
            return Outcome::Failed { reason, logs: log.finish(Some(&note)).await }.into();
        }
        let status = match status {
            Some(status) => status,
            None => child.wait().await.map_err(|e| e.to_string()),
        };
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                let note = format!("the command's exit status could not be read ({e}); its outcome is unknown");
                let logs = log.finish(Some(&note)).await;
                return Outcome::Failed { reason: FailureReason::StatusUnknown(e), logs }.into();
            }
        };
        let exit_code = exit_code(status);
        let note = limit_note(exit_code, log.head(), limits);
        let sandbox_empty = match watch {
            Some(watch) => watch.ended(DRAIN_GRACE).await,
            None => false,
        };
        Ended { outcome: Outcome::Exited { exit_code, logs: log.finish(note.as_deref()).await }, sandbox_empty }
    }
}

/// How a run ended.
struct Ended {
    outcome: Outcome,
    /// The sandbox's PID namespace is known to be gone, and with it every process of the run.
    sandbox_empty: bool,
}

impl From<Outcome> for Ended {
    fn from(outcome: Outcome) -> Self {
        Ended { outcome, sandbox_empty: false }
    }
}

enum Stop {
    Timeout,
    DiskFull,
    Requested(StopReason),
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn run(&self, job: Job, stop: StopSignal) -> Outcome {
        let lease = match &self.uids {
            Some(uids) => match uids.acquire(&format!("command {}", job.id)).await {
                Ok(lease) => Some(lease),
                Err(e) => return start_failed(format!("leasing a uid for the command: {e}")),
            },
            None => None,
        };
        let uid = lease.as_ref().map(UidLease::uid);
        let dirs = RunDirs::new(&self.runs_dir, job.id.as_str(), self.sandbox.needs_tmpdir());
        let prepared = {
            let (dirs, job) = (dirs.clone(), job.clone());
            tokio::task::spawn_blocking(move || Self::prepare(&dirs, &job, uid)).await
        };
        let ended = match prepared {
            Ok(Ok(())) => self.execute(&job, &dirs, uid, stop).await,
            Ok(Err(detail)) => start_failed(detail).into(),
            Err(e) => start_failed(format!("preparing the run: {e}")).into(),
        };
        if ended.sandbox_empty {
            // Nothing of the command is left: handing the uid back need not delay the result.
            if let Some(lease) = lease {
                tokio::spawn(lease.release_empty());
            }
        } else if let Some(lease) = lease {
            // Every process of the uid is gone before the uid or the result goes anywhere.
            lease.release().await;
        }
        // The working directory holds the kubeconfig: it is gone before the result is.
        dirs.remove().await;
        ended.outcome
    }

    fn isolation(&self) -> Isolation {
        self.sandbox.isolation()
    }
}

async fn sweep_orphans_periodically(uids: std::sync::Weak<UidLeases>) {
    let mut every = tokio::time::interval(ORPHAN_SWEEP_PERIOD);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(uids) = uids.upgrade() else { return };
        let _ = tokio::task::spawn_blocking(move || uids.sweep_orphans()).await;
    }
}

/// A command's process group (and uid, when it has its own and its processes can leave the
/// group); killed however the run ends.
struct ProcessGroup {
    pid: Pid,
    uid: Option<u32>,
}

impl ProcessGroup {
    fn kill(&self) {
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

/// Where working directories live: `<data-dir>/runs` when a command's own uid can reach it,
/// else a root-owned, unlistable directory under the system temp directory (data directories
/// usually sit under a private home). Emptied at startup.
fn runs_dir_for(data_dir: &Path, is_root: bool) -> anyhow::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let inside = data_dir.join("runs");
    let dir = if !is_root || crate::files::reachable_by_anyone(&inside) {
        inside
    } else {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data_dir.hash(&mut hasher);
        std::env::temp_dir().join(format!("kubeinvoke-runs-{:016x}", hasher.finish()))
    };
    match fs::symlink_metadata(&dir) {
        Ok(meta) => {
            let ours = meta.is_dir() && meta.uid() == rustix::process::geteuid().as_raw();
            anyhow::ensure!(ours, "{} exists and is not a directory of ours; refusing to use it", dir.display());
            fs::remove_dir_all(&dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    fs::DirBuilder::new().mode(0o711).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))?;
    Ok(dir)
}

/// A line for the logs when the exit status or the output shows that a resource limit was hit
/// (a limit is often hit by one process of a script that then goes on).
fn limit_note(exit_code: i32, head: &[u8], limits: &super::ExecLimits) -> Option<String> {
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

fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
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

/// The exit code a shell would report: the code, or 128 + N for death by signal N.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

fn start_failed(detail: String) -> Outcome {
    tracing::warn!(%detail, "command could not be started");
    Outcome::Failed { reason: FailureReason::StartFailed(detail.clone()), logs: format!("[kubeinvoke] {detail}\n") }
}

fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    let owner = Some(rustix::fs::Uid::from_raw(uid));
    let group = Some(rustix::fs::Gid::from_raw(uid));
    rustix::fs::chownat(rustix::fs::CWD, path, owner, group, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}
