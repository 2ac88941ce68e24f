//! Executors run one claimed command and report how it ended. They know nothing about HTTP.

pub mod helper;
mod limits;
mod local;
mod output;
pub mod sandbox;
mod uids;

use async_trait::async_trait;

use crate::command::Outcome;

pub use limits::{ExecLimits, LimitOverrides};
pub use local::LocalExecutor;
pub use sandbox::{Isolation, SandboxPolicy};

/// Everything an executor needs to run one command.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub command: String,
    /// The checked context zip (empty: no files).
    pub context: Vec<u8>,
    /// The cluster's kubeconfig, when it was registered with one.
    pub kubeconfig: Option<Vec<u8>>,
    /// The limits this run gets: the server's, tightened by the cluster's.
    pub limits: ExecLimits,
    /// Where the full output goes as it is produced (for live logs), up to `limits.max_output_bytes`.
    pub output: Option<std::path::PathBuf>,
}

/// Why a running command is being stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The server is shutting down and the grace period is over.
    Shutdown,
    /// Someone canceled it (their app id).
    Cancel(String),
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
}
