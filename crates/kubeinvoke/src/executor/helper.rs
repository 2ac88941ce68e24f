//! `kubeinvoke sandbox-exec`: the single-threaded step between the server and a command under
//! Landlock isolation.
//!
//! Landlock rules are built by the `landlock` crate, which allocates: that must not happen in
//! the multi-threaded server between fork and exec, so a fresh process applies them (with the
//! limits and the uid switch), then execs the command. Under bubblewrap and without isolation
//! the server spawns the command directly (`process_limits.rs`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Args;
use landlock::{ABI, Access, AccessFs, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules};
use rustix::process::Signal;

use super::process_limits::ProcessLimits;

/// Exit code when the helper itself fails before the command starts.
pub const HELPER_FAILED: i32 = 125;
/// Exit code of `--landlock-probe` when Landlock cannot be fully enforced.
pub const LANDLOCK_UNAVAILABLE: i32 = 3;

#[derive(Debug, Args)]
pub struct SandboxExecArgs {
    #[command(flatten)]
    pub limits: ProcessLimits,
    #[arg(long, requires = "gid")]
    pub uid: Option<u32>,
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
    /// Paths the command may read and write (Landlock mode).
    #[arg(long)]
    pub landlock_rw: Vec<PathBuf>,
    /// Paths the command may read (Landlock mode).
    #[arg(long)]
    pub landlock_ro: Vec<PathBuf>,
    /// Exit 0 if Landlock is fully enforced, 3 if not, without running anything.
    #[arg(long)]
    pub landlock_probe: bool,
    /// The program and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Applies everything, then replaces this process with the command. Returns only on failure.
pub fn run(args: SandboxExecArgs) -> i32 {
    match prepare_and_exec(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("[kubeinvoke] the sandbox could not start the command: {message}");
            HELPER_FAILED
        }
    }
}

fn prepare_and_exec(args: SandboxExecArgs) -> Result<i32, String> {
    args.limits.apply().map_err(|e| format!("setting the parent-death signal and resource limits: {e}"))?;
    if args.landlock_probe || !args.landlock_rw.is_empty() {
        let enforced = restrict_filesystem(&args.landlock_rw, &args.landlock_ro)?;
        if args.landlock_probe {
            return Ok(if enforced { 0 } else { LANDLOCK_UNAVAILABLE });
        }
        if !enforced {
            return Err("Landlock is not fully enforced on this kernel".into());
        }
    }
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut command = std::process::Command::new(program);
    command.args(rest);
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        // std drops supplementary groups and sets the gid before the uid.
        command.uid(uid).gid(gid);
        // Changing credentials clears the parent-death signal: set it again, after the switch.
        // SAFETY: runs between the credential change and exec in this single-threaded process;
        // prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(std::io::Error::from)
            });
        }
    }
    let error = command.exec();
    Err(format!("executing {program}: {error}"))
}

/// Landlock: read-only everywhere listed in `ro`, read-write in `rw`, nothing else.
fn restrict_filesystem(rw: &[PathBuf], ro: &[PathBuf]) -> Result<bool, String> {
    let abi = ABI::V2;
    let status = landlock::Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(ro, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(rw, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("applying Landlock rules: {e}"))?;
    Ok(status.ruleset == RulesetStatus::FullyEnforced)
}
