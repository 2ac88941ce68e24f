//! The command-line client for people: `invoke`, `result`, `cluster`, `group`, `login`.
//!
//! It speaks the same ARM API as az, but exits with the command's own exit code, waits as long as
//! the command runs, and prints errors as one line. Exit codes are in [`exit`].

pub(crate) mod api;
pub mod approvals;
pub mod cluster;
pub(crate) mod config;
pub mod exit;
pub mod fanout;
pub mod group;
pub mod invoke;
pub mod login;
pub(crate) mod output;
pub mod saved;

pub use exit::ClientError;
