//! Executors run one claimed command and report how it ended. They know nothing about HTTP.

mod local;
mod output;

use std::time::Duration;

use async_trait::async_trait;

use crate::command::Outcome;
use crate::context::ContextLimits;

pub use local::LocalExecutor;

/// Everything an executor needs to run one command.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub command: String,
    /// The checked context zip (empty: no files).
    pub context: Vec<u8>,
    /// The cluster's kubeconfig, when it was registered with one.
    pub kubeconfig: Option<Vec<u8>>,
}

/// Limits every command runs under.
#[derive(Debug, Clone, Copy)]
pub struct ExecLimits {
    pub timeout: Duration,
    /// Bytes of merged stdout/stderr kept in `logs`.
    pub log_cap: usize,
    pub context: ContextLimits,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits { timeout: Duration::from_secs(3600), log_cap: 512 * 1024, context: ContextLimits::default() }
    }
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs the job to its end. Never panics on the command's behalf: every failure is an [`Outcome`].
    async fn run(&self, job: Job) -> Outcome;
}
