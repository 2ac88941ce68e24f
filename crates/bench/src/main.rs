//! `kubeinvoke-bench`: measures a release kubeinvoke against baselines run side by side in the
//! same process tree, so a noisy machine moves both, and rewrites the figures in BENCHMARKS.md.
//! Run it through `scripts/bench.sh`, which builds, installs wrk and prepares PostgreSQL.

mod activity;
mod baseline;
mod bench;
mod charts;
mod commands;
mod fanout;
mod growth;
mod load;
mod memory;
mod pgbench;
mod pods;
mod reads;
mod replicas;
mod report;
mod soak;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::bench::Bench;
use crate::growth::Backend;
use crate::report::Results;

#[derive(Parser)]
#[command(about = "Benchmarks kubeinvoke against same-run baselines and writes BENCHMARKS.md")]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Shorter runs and smaller counts, to check the harness itself.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (comma-separated): reads, invoke, throughput, growth, memory, replicas.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Stored results for the large growth point.
    #[arg(long, default_value_t = 1_000_000)]
    growth_large: u64,
    /// PostgreSQL server (URL without a database) for the PostgreSQL figures; none: skip them.
    #[arg(long, env = "KUBEINVOKE_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// The document whose generated section is rewritten.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Where the charts go (linked from the document relative to it).
    #[arg(long, default_value = "docs/bench")]
    charts: PathBuf,
    /// Scratch space for data directories.
    #[arg(long, default_value = "target/bench-work")]
    work: PathBuf,
}

#[derive(Subcommand)]
enum Mode {
    /// The soak: mixed load for a duration (default 10 minutes); rewrites its own section.
    Soak {
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// The Pod path against a real control plane (scripts/dev-cluster.sh); its own section.
    Pods {
        #[arg(long, default_value_t = 100)]
        commands: usize,
    },
    /// A fan-out run against the same commands submitted by a client; its own section.
    Fanout {
        #[arg(long, default_value_t = 200)]
        clusters: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Clusters registered in all for the target-selection measurement.
        #[arg(long, default_value_t = 10_000)]
        selection_fleet: usize,
        /// Servers sharing the work: 1 is one server on SQLite; 2 or more share one PostgreSQL
        /// database (`--postgres`).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// The activity log's cost on command throughput, and events delivered per second.
    Activity,
    /// Internal: the hyper + rustls baseline server.
    #[command(hide = true)]
    Baseline(baseline::BaselineArgs),
}

fn main() -> anyhow::Result<()> {
    // The executor measured in-process runs commands through `<this binary> sandbox-exec`.
    if std::env::args().nth(1).as_deref() == Some("sandbox-exec") {
        use clap::Parser as _;
        if let kubeinvoke::cli::Command::SandboxExec(args) = kubeinvoke::cli::Cli::parse().command {
            std::process::exit(kubeinvoke::executor::helper::run(args));
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let Some(Mode::Baseline(args)) = cli.command {
        return baseline::run(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&cli.work);
    std::fs::create_dir_all(&cli.work)?;
    let work = std::fs::canonicalize(&cli.work)?;
    // Command uids must be able to reach their working directories under it.
    set_mode(&work, 0o755)?;
    let bench = Bench::new(work, cli.quick, cli.postgres.clone());
    let header = header(&cli)?;
    if let Some(Mode::Soak { duration }) = cli.command {
        let soak = soak::run(&bench, duration).await?;
        let section = report::render_soak(&soak, &header)?;
        return write_section(&cli.out, "soak", &section);
    }
    if let Some(Mode::Pods { commands }) = cli.command {
        let measured = pods::run(&bench, commands).await?;
        let section = report::render_pods(&measured, &header)?;
        return write_section(&cli.out, "pods", &section);
    }
    if let Some(Mode::Fanout { clusters, concurrency, selection_fleet, replicas }) = cli.command {
        let measured = fanout::run(&bench, clusters, concurrency, selection_fleet, replicas).await?;
        let section = report::render_fanout(&measured, &header)?;
        return write_section(&cli.out, "fanout", &section);
    }
    if let Some(Mode::Activity) = cli.command {
        let measured = activity::run(&bench).await?;
        let section = report::render_activity(&measured, &header)?;
        return write_section(&cli.out, "activity", &section);
    }
    let wanted = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
    let mut results = Results::default();
    // A scenario that fails is reported as not measured; the others still run.
    let mut failures = Vec::new();
    let f = &mut failures;
    if wanted("reads") {
        results.reads = measure(f, "result reads", reads::run(&bench)).await;
    }
    if wanted("invoke") {
        results.invoke = measure(f, "invoke latency", commands::invoke_latency(&bench)).await;
    }
    if wanted("throughput") {
        results.throughput = measure(f, "command throughput", commands::throughput(&bench)).await;
    }
    if wanted("memory") {
        results.memory = measure(f, "memory under pressure", memory::run(&bench)).await;
    }
    if wanted("replicas") && cli.postgres.is_some() {
        for n in [1, 3] {
            results
                .replicas
                .extend(measure(f, &format!("{n} replica(s) on PostgreSQL"), replicas::run(&bench, n)).await);
        }
        for notify in [true, false] {
            let name = format!("pickup across replicas (notify: {notify})");
            results.pickup.extend(measure(f, &name, replicas::pickup(&bench, notify)).await);
        }
        results.lease = measure(f, "lease expiry", replicas::lease_expiry(&bench)).await;
    }
    if wanted("growth") {
        let large = if cli.quick { 20_000 } else { cli.growth_large };
        let backends: &[Backend] =
            if cli.postgres.is_some() { &[Backend::Sqlite, Backend::Postgres] } else { &[Backend::Sqlite] };
        for &backend in backends {
            for (stored, read_cache) in [(1_000, false), (large, false), (large, true)] {
                let cache = if read_cache { "with" } else { "without" };
                let name = format!("growth: {stored} results on {backend:?}, {cache} the read cache");
                let point = measure(f, &name, growth::run(&bench, backend, stored, read_cache)).await;
                results.growth.extend(point.map(|p| (backend, p)));
            }
        }
        if cli.postgres.is_some() {
            results.pgbench = measure(f, "pgbench -S on the same PostgreSQL server", pgbench::run(&bench)).await;
        }
    }
    results.failures = failures;
    let out_dir = cli.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let link = pathdiff(&cli.charts, out_dir);
    let section = report::render(&results, &header, &cli.charts, &link)?;
    write_section(&cli.out, "bench", &section)
}

/// Runs one scenario; a failure is noted (and printed) instead of ending the run.
async fn measure<T>(
    failures: &mut Vec<(String, String)>,
    name: &str,
    scenario: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Option<T> {
    eprintln!("== {name}");
    match scenario.await {
        Ok(value) => Some(value),
        Err(e) => {
            eprintln!("!! {name} failed: {e:#}");
            failures.push((name.to_string(), format!("{e:#}")));
            None
        }
    }
}

fn write_section(out: &std::path::Path, name: &str, section: &str) -> anyhow::Result<()> {
    let document = std::fs::read_to_string(out).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    std::fs::write(out, report::splice(&document, name, section))?;
    println!("{section}");
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Date, machine, commit and the command line: what every figure below depends on.
fn header(cli: &Cli) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = memory
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|_| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()).unwrap_or(false);
    let args: Vec<String> = std::env::args().skip(1).collect();
    Ok(format!(
        "Measured {now} on {cores} × {cpu}, {:.0} GiB RAM, commit `{commit}`{}, by `scripts/bench.sh {}`{}. kubeinvoke, the baselines, wrk and PostgreSQL all share these cores.",
        memory as f64 / 1048576.0,
        if dirty { " (with uncommitted changes)" } else { "" },
        args.join(" "),
        if cli.quick { " (**quick mode: short runs, small counts — not the reference figures**)" } else { "" }
    ))
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git").args(args).output().context("git")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn set_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `docs/bench` relative to the directory holding the document (both relative to the cwd).
fn pathdiff(target: &std::path::Path, base: &std::path::Path) -> String {
    if base == std::path::Path::new(".") {
        return target.display().to_string();
    }
    let depth = base.components().count();
    format!("{}{}", "../".repeat(depth), target.display())
}
