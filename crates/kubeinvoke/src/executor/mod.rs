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
}

/// Tells a running command to stop now (the server is shutting down and its grace has passed).
#[derive(Clone)]
pub struct StopSignal(tokio::sync::watch::Receiver<bool>);

impl StopSignal {
    pub fn new(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        StopSignal(receiver)
    }

    /// Resolves when stopping is asked for; never, if the sender is gone without asking.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
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
