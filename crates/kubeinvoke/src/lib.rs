//! kubeinvoke: the AKS Run Command API, self-hosted, really running the commands.
//!
//! See ARCHITECTURE.md for the bird's-eye view. The parts, from the wire inwards:
//! `arm` (path grammar, wire types, errors) → [`server`] (HTTPS, auth, handlers) →
//! [`store`] (durable state) → `dispatcher` (queue, at-most-once claims) → [`executor`]
//! (running a command).
//!
//! Only the modules the binary, the bench and the integration tests use are public; every other
//! item is `pub(crate)`, and `unreachable_pub` keeps it so.

#![deny(unreachable_pub)]

pub(crate) mod activity;
pub mod admin;
pub mod approval;
pub(crate) mod arm;
pub mod audit;
pub(crate) mod azure;
pub mod cli;
pub mod client;
pub(crate) mod cluster_settings;
pub mod command;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod dispatcher;
pub(crate) mod events;
pub mod executor;
pub mod fanout;
pub(crate) mod files;
pub mod identity;
pub(crate) mod kubeconfig;
pub mod log_format;
pub mod log_writer;
pub mod resource;
pub mod run_as;
pub(crate) mod saved_command;
pub mod server;
pub(crate) mod services;
pub mod store;
pub mod time;
