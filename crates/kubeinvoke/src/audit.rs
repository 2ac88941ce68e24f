//! `kubeinvoke audit verify` walks the activity log's hash chain and names the first event that
//! was changed, removed or reordered; `kubeinvoke audit export` writes events as JSON lines for a
//! SIEM. Both open the store directly (a data directory's SQLite, or the replicas' PostgreSQL).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::activity::chain::Walk;
use crate::config::default_data_dir;
use crate::store::StoreLocation;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The server's data directory.
    #[arg(long, env = "KUBEINVOKE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's store: `sqlite` (in the data dir) or the replicas' PostgreSQL URL.
    #[arg(long, env = "KUBEINVOKE_STORE", default_value = "sqlite", global = true, hide_env_values = true)]
    pub store: StoreLocation,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no event was changed, removed or reordered; exits 1 naming the first that was.
    Verify,
    /// Write events as JSON lines (`{"seq", "hash", "prevHash", "event"}`), oldest first.
    Export {
        /// Only events at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

const BATCH: usize = 1000;

/// Returns the process exit code: 0 intact, 1 tampered with.
pub async fn audit(args: AuditArgs) -> anyhow::Result<u8> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let store = crate::store::open(&args.store, &data_dir, false).await?;
    let activity = store.activity();
    match args.command {
        AuditCommand::Verify => {
            let mut walk = Walk::new(&activity.chain_anchor().await?);
            let mut after = 0;
            loop {
                let events = activity.events_after(after, BATCH).await?;
                let Some(last) = events.last() else { break };
                after = last.seq;
                for event in &events {
                    if let Err(broken) = walk.next(event) {
                        println!("the activity log was tampered with: {broken}");
                        return Ok(1);
                    }
                }
            }
            println!("the activity log is intact: {} events, head {}", walk.checked, walk.head());
            Ok(0)
        }
        AuditCommand::Export { since, out } => {
            let since = match since {
                Some(text) => {
                    let parsed = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--since '{text}' is not an RFC 3339 time"))?;
                    (parsed.unix_timestamp_nanos() / 1_000_000) as i64
                }
                None => i64::MIN,
            };
            let mut sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let (mut after, mut written) = (0, 0u64);
            loop {
                let events = activity.events_after(after, BATCH).await?;
                let Some(last) = events.last() else { break };
                after = last.seq;
                for event in events.iter().filter(|e| e.time >= since) {
                    let content: serde_json::Value = serde_json::from_str(&event.content)?;
                    let line = serde_json::json!({"seq": event.seq, "hash": event.hash, "prevHash": event.prev_hash, "event": content});
                    writeln!(sink, "{line}")?;
                    written += 1;
                }
            }
            sink.flush()?;
            if let Some(path) = out {
                eprintln!("wrote {written} events to {}", path.display());
            }
            Ok(0)
        }
    }
}
