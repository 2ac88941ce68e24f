//! The local executor: each command is a shell in its own process group on this host, in a
//! fresh working directory that is removed when it ends.
//!
//! stdout and stderr share one pipe, so `logs` keeps the order in which the command wrote them.
//! Sandboxing wraps the spawn (see ARCHITECTURE.md); everything else here stays the same.

use std::ffi::OsString;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::output::CappedLog;
use super::{ExecLimits, Executor, Job};
use crate::command::{FailureReason, Outcome};

/// How long output is still read after the command's main process has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

pub struct LocalExecutor {
    runs_dir: PathBuf,
    limits: ExecLimits,
    shell: PathBuf,
    path_env: OsString,
    lang: OsString,
}

impl LocalExecutor {
    /// Prepares `runs_dir` (mode 0700), removing what a previous process left behind.
    pub fn new(runs_dir: PathBuf, limits: ExecLimits) -> std::io::Result<Self> {
        if runs_dir.exists() {
            fs::remove_dir_all(&runs_dir)?;
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&runs_dir)?;
        let path_env = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let shell = find_in_path(&path_env, "bash")
            .or_else(|| find_in_path(&path_env, "sh"))
            .unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let lang = std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into());
        Ok(LocalExecutor { runs_dir, limits, shell, path_env, lang })
    }

    /// Creates the working directory with the context and kubeconfig in it.
    fn prepare(&self, job: &Job) -> Result<PreparedRun, String> {
        let workdir = self.runs_dir.join(&job.id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&workdir)
            .map_err(|e| format!("creating the working directory: {e}"))?;
        let run = PreparedRun { workdir, kubeconfig: None };
        crate::context::extract(&job.context, &run.workdir, self.limits.context)
            .map_err(|e| format!("unpacking the context: {e}"))?;
        let Some(kubeconfig) = &job.kubeconfig else {
            return Ok(run);
        };
        let kube_dir = run.workdir.join(".kube");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&kube_dir)
            .map_err(|e| format!("creating .kube: {e}"))?;
        let path = kube_dir.join("config");
        write_private(&path, kubeconfig).map_err(|e| format!("writing the kubeconfig: {e}"))?;
        Ok(PreparedRun { kubeconfig: Some(path), ..run })
    }

    async fn execute(&self, job: &Job, run: &PreparedRun) -> Outcome {
        let (read_end, write_end) = match output_pipe() {
            Ok(pair) => pair,
            Err(e) => return start_failed(format!("creating the output pipe: {e}")),
        };
        let mut command = tokio::process::Command::new(&self.shell);
        command
            .arg("-c")
            .arg(&job.command)
            .current_dir(&run.workdir)
            .env_clear()
            .env("PATH", &self.path_env)
            .env("HOME", &run.workdir)
            .env("LANG", &self.lang)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(kubeconfig) = &run.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        match write_end.try_clone() {
            Ok(stderr) => command.stdout(Stdio::from(write_end)).stderr(Stdio::from(stderr)),
            Err(e) => return start_failed(format!("duplicating the output pipe: {e}")),
        };
        let spawned = command.spawn();
        // The Command holds our copies of the pipe's write end: drop it so EOF means "all writers gone".
        drop(command);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return start_failed(format!("starting {}: {e}", self.shell.display())),
        };
        let group = ProcessGroup(child.id().and_then(|id| Pid::from_raw(id as i32)));
        let mut reader = match pipe::Receiver::from_owned_fd(read_end) {
            Ok(reader) => reader,
            Err(e) => return start_failed(format!("reading the output pipe: {e}")),
        };

        let mut log = CappedLog::new(self.limits.log_cap);
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::sleep(self.limits.timeout);
        tokio::pin!(deadline);
        let mut status: Option<ExitStatus> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            let drain = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = reader.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => log.push(&chunk[..n]),
                },
                waited = child.wait(), if status.is_none() => {
                    status = Some(waited.unwrap_or_else(|_| ExitStatus::from_raw(0)));
                    // The main process is done: end whatever it left running, then drain the pipe.
                    group.kill();
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                _ = drain => break,
                _ = &mut deadline, if status.is_none() => {
                    group.kill();
                    let _ = child.wait().await;
                    drain_remaining(&mut reader, &mut log, &mut chunk).await;
                    let note = format!("command timed out after {} and was killed", humantime::format_duration(self.limits.timeout));
                    return Outcome::Failed { reason: FailureReason::Timeout, logs: log.finish(Some(&note)) };
                }
            }
        }
        group.kill();
        let status = match status {
            Some(status) => status,
            None => child.wait().await.unwrap_or_else(|_| ExitStatus::from_raw(0)),
        };
        Outcome::Exited { exit_code: exit_code(status), logs: log.finish(None) }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn run(&self, job: Job) -> Outcome {
        let prepared = {
            let job = job.clone();
            let this = self.snapshot();
            tokio::task::spawn_blocking(move || this.prepare(&job)).await
        };
        match prepared {
            Ok(Ok(run)) => {
                let outcome = self.execute(&job, &run).await;
                remove_workdir(run.workdir).await;
                outcome
            }
            Ok(Err(detail)) => {
                remove_workdir(self.runs_dir.join(&job.id)).await;
                start_failed(detail)
            }
            Err(e) => start_failed(format!("preparing the run: {e}")),
        }
    }
}

impl LocalExecutor {
    /// A copy to move onto the blocking pool (the executor itself is shared).
    fn snapshot(&self) -> LocalExecutor {
        LocalExecutor {
            runs_dir: self.runs_dir.clone(),
            limits: self.limits,
            shell: self.shell.clone(),
            path_env: self.path_env.clone(),
            lang: self.lang.clone(),
        }
    }
}

struct PreparedRun {
    workdir: PathBuf,
    kubeconfig: Option<PathBuf>,
}

/// A command's process group; killed when the run ends, however it ends.
struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // ESRCH (already gone) is the normal case.
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

async fn drain_remaining(reader: &mut pipe::Receiver, log: &mut CappedLog, chunk: &mut [u8]) {
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        while let Ok(n) = reader.read(chunk).await {
            if n == 0 {
                break;
            }
            log.push(&chunk[..n]);
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

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

async fn remove_workdir(dir: PathBuf) {
    let result = tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((dir, e)),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err((dir, e))) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a working directory");
    }
}

fn find_in_path(path: &OsString, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}
