//! kubeinvoke: the AKS Run Command API, self-hosted, really running the commands.
//!
//! See ARCHITECTURE.md for the bird's-eye view. The parts, from the wire inwards:
//! [`arm`] (path grammar, wire types, errors) → [`server`] (HTTPS, auth, handlers) →
//! [`store`] (durable state) → [`dispatcher`] (queue, at-most-once claims) → [`executor`]
//! (running a command).

pub mod activity;
pub mod admin;
pub mod arm;
pub mod audit;
pub mod azure;
pub mod cli;
pub mod client;
pub mod cluster_settings;
pub mod command;
pub mod config;
pub mod context;
pub mod dispatcher;
pub mod events;
pub mod executor;
pub mod fanout;
pub mod files;
pub mod identity;
pub mod kubeconfig;
pub mod log_format;
pub mod log_writer;
pub mod resource;
pub mod saved_command;
pub mod server;
pub mod services;
pub mod store;
pub mod time;
