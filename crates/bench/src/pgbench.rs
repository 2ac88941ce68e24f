//! The physical reference for PostgreSQL's reads: `pgbench -S` (one primary-key `SELECT` per
//! transaction, PostgreSQL's own client, no HTTP, TLS or authorization) on the same server, at
//! the same 8 connections as the growth scenario's random reads, so a row beside kubeinvoke's
//! shows what the database itself allows on these cores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::bench::Bench;

/// Connections, as the growth scenario's `wrk -c8`.
const CLIENTS: u32 = 8;
/// 100,000 rows in `pgbench_accounts`: the size of the growth scenario's large point.
const SCALE: u32 = 1;

pub struct PgbenchReference {
    pub selects_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// How it was run, without the server's address or password.
    pub command: String,
}

pub async fn run(bench: &Bench) -> anyhow::Result<PgbenchReference> {
    let pgbench = binary().context("pgbench is not installed (Debian: postgresql-15)")?;
    let url = bench.postgres_database("pgbench").await?;
    std::fs::create_dir_all(&bench.work)?;
    let logs = tempfile::tempdir_in(&bench.work)?;
    let seconds = bench.measure_for().as_secs().max(1);
    let measured = async {
        run_pgbench(&pgbench, &["-i", "-q", "-s", &SCALE.to_string(), &url], logs.path()).await?;
        let (clients, threads, duration) = (CLIENTS.to_string(), "2".to_string(), seconds.to_string());
        let args = ["-S", "-n", "-M", "prepared", "-c", &clients, "-j", &threads, "-T", &duration, "-l"];
        let report = run_pgbench(&pgbench, &[&args[..], &["--log-prefix", "tx", &url]].concat(), logs.path()).await?;
        let selects_per_sec = tps(&report).context("pgbench printed no tps")?;
        let mut latencies = transaction_latencies(logs.path())?;
        anyhow::ensure!(!latencies.is_empty(), "pgbench logged no transactions");
        latencies.sort_unstable();
        Ok(PgbenchReference {
            selects_per_sec,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            command: format!("pgbench -i -s {SCALE}; pgbench {} (same server)", args.join(" ")),
        })
    }
    .await;
    bench.drop_postgres_database(&url).await?;
    measured
}

/// The newest installed PostgreSQL's `pgbench` (Debian keeps it out of PATH).
fn binary() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|path| path.is_file())
        .collect();
    found.sort_by_key(|path| {
        path.parent().and_then(Path::parent).and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
    });
    found.pop()
}

async fn run_pgbench(pgbench: &Path, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(pgbench).args(args).current_dir(dir).output(),
    )
    .await
    .context("pgbench did not end in 5 minutes")??;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(output.status.success(), "pgbench failed ({}): {}", output.status, text.trim());
    Ok(text)
}

/// `tps = 12345.678901 (without initial connection time)`.
fn tps(report: &str) -> Option<f64> {
    report.lines().find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

/// Each transaction's latency in microseconds, from the per-thread logs `-l` writes
/// (`client_id transaction_no time script_no time_epoch time_us`, time being the latency).
fn transaction_latencies(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("tx.") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())?.lines() {
            if let Some(latency) = line.split_whitespace().nth(2).and_then(|t| t.parse().ok()) {
                latencies.push(latency);
            }
        }
    }
    Ok(latencies)
}

fn percentile(sorted_micros: &[u64], quantile: f64) -> f64 {
    let index = ((sorted_micros.len() as f64 * quantile) as usize).min(sorted_micros.len() - 1);
    sorted_micros[index] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_and_the_logs_are_read_as_pgbench_writes_them() {
        let report = "latency average = 0.210 ms\ninitial connection time = 9.1 ms\ntps = 38012.523411 (without initial connection time)\n";
        assert_eq!(tps(report), Some(38012.523411));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tx.123"), "0 0 180 0 1764810000 123456\n1 0 240 0 1764810000 123999\n")
            .unwrap();
        std::fs::write(dir.path().join("tx.123.1"), "2 0 900 0 1764810000 124000\n").unwrap();
        std::fs::write(dir.path().join("pgbench_log.other"), "3 0 99999 0 1 1\n").unwrap();
        let mut latencies = transaction_latencies(dir.path()).unwrap();
        latencies.sort_unstable();
        assert_eq!(latencies, [180, 240, 900]);
        assert_eq!(percentile(&latencies, 0.5), 0.24);
    }
}
