//! Executors run one claimed command and report how it ended. They know nothing about HTTP.

pub mod helper;
pub mod kubernetes;
mod limits;
mod local;
pub(crate) mod masking;
mod namespace;
mod output;
mod process_limits;
pub mod sandbox;
pub mod spawn;
pub(crate) mod uids;

use async_trait::async_trait;

use crate::command::Outcome;

pub use limits::{ExecLimits, LimitOverrides};
pub use local::LocalExecutor;
pub use sandbox::{Isolation, SandboxPolicy};

/// Everything an executor needs to run one command.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: crate::command::CommandId,
    pub command: String,
    /// The checked context zip (empty: no files).
    pub context: Vec<u8>,
    /// The kubeconfig the command uses: the cluster's, or the cluster's with the caller's token
    /// (`as_caller`).
    pub kubeconfig: Option<Vec<u8>>,
    /// The cluster's registered kubeconfig when `kubeconfig` carries the caller's token instead
    /// (`None`: `kubeconfig` is the cluster's own). See [`Job::server_kubeconfig`].
    pub cluster_kubeconfig: Option<Vec<u8>>,
    /// The kubeconfig carries the caller's own token (`clusterToken`), not the cluster's
    /// credentials: the command must act as the caller.
    pub as_caller: bool,
    /// The limits this run gets: the server's, tightened by the cluster's and the request's.
    pub limits: ExecLimits,
    /// Environment variables for the command (saved command parameters, secret ones included).
    pub environment: Vec<(String, String)>,
    /// The values of its secret parameters: masked (`***`) wherever its output goes.
    pub masked: Vec<String>,
    /// Where the full output goes as it is produced (for live logs), up to `limits.max_output_bytes`.
    pub output: Option<std::path::PathBuf>,
    /// The command Pod's service account (a saved command's `runAs.serviceAccount`): the Pod
    /// executor runs it as that account, with its token and nothing else.
    pub service_account: Option<String>,
    /// Told the run's exit code and logs the moment they are known, before its cleanup.
    pub on_exit: Option<ExitNotice>,
}

impl Job {
    /// `command` alone: no files, kubeconfig, environment or masked values, the default limits,
    /// no live output and nobody told of its end. Callers set what their run needs on top.
    pub fn plain(id: crate::command::CommandId, command: impl Into<String>) -> Job {
        Job {
            id,
            command: command.into(),
            context: Vec::new(),
            kubeconfig: None,
            cluster_kubeconfig: None,
            as_caller: false,
            limits: ExecLimits::default(),
            environment: Vec::new(),
            masked: Vec::new(),
            output: None,
            service_account: None,
            on_exit: None,
        }
    }

    /// Tells `on_exit` that the command ran to its end with `exit_code` and `logs`.
    pub(crate) fn exited(&self, exit_code: i32, logs: &str) {
        if let Some(notice) = &self.on_exit {
            (notice.0)(exit_code, logs);
        }
    }

    /// The kubeconfig for the server's own calls: the Pod executor creates, watches and deletes
    /// the command's Pod with the cluster's registered credentials (as AKS does with its own
    /// identity), never with the caller's token, which only the command gets.
    pub fn server_kubeconfig(&self) -> Option<&[u8]> {
        self.cluster_kubeconfig.as_deref().or(self.kubeconfig.as_deref())
    }
}

/// Who hears of a run that ended by itself as soon as its exit code and logs are known: before
/// the sandbox's end is awaited, its uid released, its working directory removed or its Pod
/// deleted. The dispatcher journals the end there, so a replica that dies during that cleanup
/// comes back knowing the command ran to its end (`dispatcher/exits.rs`) instead of calling it
/// `Interrupted`.
#[derive(Clone)]
pub struct ExitNotice(std::sync::Arc<TellExit>);

/// Told a run's exit code and logs.
type TellExit = dyn Fn(i32, &str) + Send + Sync;

impl ExitNotice {
    pub fn new(tell: impl Fn(i32, &str) + Send + Sync + 'static) -> Self {
        ExitNotice(std::sync::Arc::new(tell))
    }
}

impl std::fmt::Debug for ExitNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExitNotice")
    }
}

/// Why a running command is being stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The server is shutting down and the grace period is over.
    Shutdown,
    /// Someone canceled it (their app id).
    Cancel(String),
    /// This replica could not renew its lease in time (it lost the database): the command is
    /// stopped before another replica may call it lost (ARCHITECTURE.md, fencing).
    Fenced,
}

/// Tells a running command to stop now, and why.
#[derive(Clone)]
pub struct StopSignal(tokio::sync::watch::Receiver<Option<StopReason>>);

impl StopSignal {
    pub fn new(receiver: tokio::sync::watch::Receiver<Option<StopReason>>) -> Self {
        StopSignal(receiver)
    }

    /// Resolves when stopping is asked for; never, if the sender is gone without asking.
    pub async fn stopped(&mut self) -> StopReason {
        let reason = match self.0.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs the job to its end, or until `stop`. Never panics on the command's behalf: every
    /// failure is an [`Outcome`].
    async fn run(&self, job: Job, stop: StopSignal) -> Outcome;

    /// The isolation commands actually get, for `/readyz`, metrics and the startup banner.
    fn isolation(&self) -> Isolation;

    /// Leftovers of earlier runs (Pods, Secrets) as command ids, for the sweeper.
    async fn leftovers(&self) -> Vec<Leftover> {
        Vec::new()
    }

    /// Removes a leftover whose command is no longer running.
    async fn remove_leftover(&self, _leftover: &Leftover) {}
}

/// Where commands run: on this host, or as Pods in their cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// On this host, in the sandbox.
    Local,
    /// As a Pod in the target cluster.
    Kubernetes,
}

impl ExecutorKind {
    /// The cluster property that overrides the server's choice for its commands.
    pub const PROPERTY: &'static str = "commandExecutor";

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "local" => Some(ExecutorKind::Local),
            "kubernetes" => Some(ExecutorKind::Kubernetes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Kubernetes => "kubernetes",
        }
    }
}

/// The executors of a server, and which one a cluster's commands get.
#[derive(Clone)]
pub struct Executors {
    /// The server's choice (`--executor`).
    pub default: ExecutorKind,
    pub local: std::sync::Arc<dyn Executor>,
    pub kubernetes: std::sync::Arc<dyn Executor>,
}

impl Executors {
    /// The executor for a cluster that chose `kind` (its `properties.commandExecutor`), else the server's.
    pub fn for_kind(&self, kind: Option<ExecutorKind>) -> &std::sync::Arc<dyn Executor> {
        match kind.unwrap_or(self.default) {
            ExecutorKind::Local => &self.local,
            ExecutorKind::Kubernetes => &self.kubernetes,
        }
    }

    pub fn default_executor(&self) -> &std::sync::Arc<dyn Executor> {
        self.for_kind(None)
    }

    pub fn all(&self) -> [&std::sync::Arc<dyn Executor>; 2] {
        [&self.local, &self.kubernetes]
    }
}

/// Something an executor left behind for a command (a Pod or Secret in some cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub command_id: crate::command::CommandId,
    /// Which cluster, in the executor's own terms.
    pub place: String,
}
