//! The local executor: each command runs on this host through the [`Sandbox`], with a uid of
//! its own (when the server is root), in a fresh working directory removed when it ends.
//!
//! stdout and stderr share one pipe, so `logs` keeps the order in which the command wrote them.

mod command_dirs;
mod ending;
mod supervise;

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::unix::pipe;

use super::namespace::InfoPipe;
use super::output::CommandOutput;
use super::sandbox::{Sandbox, SandboxPolicy, SandboxSpec};
use super::spawn::{Stdio, spawn};
use super::uids::{UidLease, UidLeases};
use super::{Executor, Isolation, Job, StopSignal};
use crate::command::{FailureReason, Outcome};
use crate::files::write_private;
use command_dirs::{CommandDirs, commands_dir_for};
use ending::{exit_code, limit_note, start_failed};
use supervise::{DRAIN_GRACE, ProcessGroup, Running, Supervised};

/// How often uids of dead servers are checked for leftover processes.
const ORPHAN_SWEEP_PERIOD: Duration = Duration::from_secs(60);

pub struct LocalExecutor {
    runs_dir: PathBuf,
    sandbox: Sandbox,
    uids: Option<Arc<UidLeases>>,
}

impl LocalExecutor {
    /// Prepares the runs directory, removing what a previous process left behind, and finds
    /// the strongest isolation the host allows under `policy`.
    pub async fn new(data_dir: &Path, policy: SandboxPolicy, max_running: usize) -> anyhow::Result<Self> {
        let is_root = rustix::process::geteuid().is_root();
        let runs_dir = commands_dir_for(data_dir, is_root)?;
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
    fn prepare(dirs: &CommandDirs, job: &Job, uid: Option<u32>) -> Result<(), String> {
        dirs.create()?;
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
        match uid {
            Some(uid) => dirs.hand_to(uid),
            None => Ok(()),
        }
    }

    async fn execute(&self, job: &Job, dirs: &CommandDirs, uid: Option<u32>, mut stop: StopSignal) -> Ended {
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
        let spec = SandboxSpec {
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
        let running = Running { child: &mut child, group: &group, output: &mut reader, log: &mut log, dirs, limits };
        let status = match running.supervise(&mut stop).await {
            Supervised::Stopped(stop) => {
                let (reason, note) = stop.failure(limits);
                // A limit hit on the way (a fork bomb that then runs out its time) is named too.
                let note = match limit_note(0, log.head(), limits) {
                    Some(limit) => format!("{limit}; then {note}"),
                    None => note,
                };
                return Outcome::Failed { reason, logs: log.finish(Some(&note)).await }.into();
            }
            Supervised::Ended(Some(status)) => status,
            Supervised::Ended(None) => child.wait().await.map_err(|e| e.to_string()),
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
        let logs = log.finish(note.as_deref()).await;
        // The end is what it is now: told before the cleanup below and in `run`, which can take
        // seconds under load.
        job.exited(exit_code, &logs);
        let sandbox_empty = match watch {
            Some(watch) => watch.ended(DRAIN_GRACE).await,
            None => false,
        };
        Ended { outcome: Outcome::Exited { exit_code, logs }, sandbox_empty }
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
        let dirs = CommandDirs::new(&self.runs_dir, job.id.as_str(), self.sandbox.needs_tmpdir());
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

fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::command::CommandId;
    use crate::executor::{ExecLimits, ExitNotice};

    /// A plain run of `command` (no kubeconfig, default limits) whose end is told to `on_exit`.
    fn job(id: CommandId, command: &str, on_exit: ExitNotice) -> Job {
        Job { on_exit: Some(on_exit), ..Job::plain(id, command) }
    }

    #[tokio::test]
    async fn a_run_that_ended_by_itself_is_told_before_its_cleanup() {
        let data = tempfile::tempdir().unwrap();
        let executor = LocalExecutor::new(data.path(), SandboxPolicy::default(), 1).await.unwrap();
        let id = CommandId::generate();
        let workdir = executor.runs_dir.join(id.as_str());
        // What the notice saw: the exit code, the logs, and whether the working directory (with the
        // kubeconfig in it) was still there, i.e. whether the cleanup had not begun.
        let told: Arc<Mutex<Vec<(i32, String, bool)>>> = Arc::default();
        let notice = {
            let (told, workdir) = (told.clone(), workdir.clone());
            ExitNotice::new(move |code, logs| told.lock().unwrap().push((code, logs.to_string(), workdir.exists())))
        };
        let job = Job {
            kubeconfig: Some(b"apiVersion: v1\nkind: Config\n".to_vec()),
            ..job(id, "echo out; echo err >&2; exit 7", notice)
        };
        let (_keep, stop) = tokio::sync::watch::channel(None);
        let outcome = executor.run(job, StopSignal::new(stop)).await;
        assert_eq!(outcome, Outcome::Exited { exit_code: 7, logs: "out\nerr\n".into() });
        assert_eq!(*told.lock().unwrap(), vec![(7, "out\nerr\n".to_string(), true)], "told once, before the cleanup");
        assert!(!workdir.exists(), "the working directory is gone once the run is over");
    }

    #[tokio::test]
    async fn a_stopped_run_is_not_told_as_an_end() {
        let data = tempfile::tempdir().unwrap();
        let executor = LocalExecutor::new(data.path(), SandboxPolicy::default(), 1).await.unwrap();
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let notice = {
            let told = told.clone();
            ExitNotice::new(move |_, _| {
                told.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let job = Job {
            limits: ExecLimits { timeout: Duration::from_millis(300), ..ExecLimits::default() },
            ..job(CommandId::generate(), "sleep 30", notice)
        };
        let (_keep, stop) = tokio::sync::watch::channel(None);
        let outcome = executor.run(job, StopSignal::new(stop)).await;
        assert!(matches!(outcome, Outcome::Failed { reason: FailureReason::Timeout, .. }), "{outcome:?}");
        assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 0, "a run that was stopped did not reach its end");
    }
}
