//! Contract tests: a real server process, real HTTPS, real SQLite, real commands.

mod harness;
#[allow(dead_code)]
#[path = "../support/prerequisites.rs"]
mod prerequisites;

mod activity;
mod cli;
mod commands;
mod contexts;
mod contract;
mod durability;
mod examples;
mod extensions;
mod fanout;
mod governance;
mod identity;
mod limits;
mod neighbours;
mod ops;
mod resources;
mod security;
mod tenants;
