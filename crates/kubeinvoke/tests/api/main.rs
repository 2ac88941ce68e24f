//! Contract tests: a real server process, real HTTPS, real SQLite, real commands.

use kubeinvoke_testkit::harness;

mod activity;
mod approvals;
mod cli;
mod commands;
mod contexts;
mod contract;
mod durability;
mod examples;
mod extensions;
mod fanout;
mod full_disk;
mod governance;
mod identity;
mod limits;
mod neighbours;
mod ops;
mod resources;
mod run_commands;
mod security;
mod tenants;
mod terraform;
