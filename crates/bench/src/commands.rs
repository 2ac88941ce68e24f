//! Running commands: end-to-end invoke latency and throughput, against bare spawns of the same
//! command, with and without the very sandbox the server uses (kubeinvoke's own executor code,
//! called in-process: no HTTP, no store, no dispatcher).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeinvoke::executor::sandbox::SandboxSpec;
use kubeinvoke::executor::spawn::{ProcessSpec, Stdio, spawn};
use kubeinvoke::executor::{ExecLimits, Executor, Isolation, Job, LocalExecutor, SandboxPolicy, StopSignal};
use tokio::sync::Semaphore;

use crate::bench::Bench;
use crate::load::{Latency, summarize};
use crate::target::Target;

pub struct InvokeLatency {
    /// `sh -c true`, spawned and awaited.
    pub bare: Latency,
    /// `bash -c true` in bubblewrap with exactly the executor's arguments (namespaces, mounts),
    /// started by the executor's own spawner and awaited, as `nobody` when the bench runs as root (commands run as a uid of
    /// their own then): no limits, no uid lease, no working directory to prepare.
    /// `None` when the host's isolation is not bubblewrap.
    pub bare_bwrap: Option<Latency>,
    /// `true` through the server's executor and sandbox.
    pub sandboxed: Latency,
    /// POST runCommand, then GET until 200, polling without pause.
    pub kubeinvoke: Latency,
    /// The same, pausing 2 ms between polls: how much the hot polling itself costs.
    pub kubeinvoke_paced: Latency,
    /// The end-to-end row again on a server whose store is PostgreSQL (with `--postgres`).
    pub kubeinvoke_postgres: Option<Latency>,
    pub isolation: String,
}

pub struct Throughput {
    pub commands: usize,
    pub max_running: usize,
    /// Completions per second of the executor alone at the same concurrency.
    pub sandboxed_per_sec: f64,
    pub kubeinvoke_per_sec: f64,
}

/// The executor the server would build, in this process.
pub async fn local_executor(bench: &Bench, max_running: usize) -> anyhow::Result<LocalExecutor> {
    let dir = bench.launch("executor", &[]).data_dir;
    std::fs::create_dir_all(&dir)?;
    let policy = SandboxPolicy::default();
    LocalExecutor::new(&dir, policy, max_running).await
}

pub async fn run_job(executor: &LocalExecutor, n: usize, command: &str) {
    let job = Job::plain(kubeinvoke::command::CommandId::from_text(format!("{n:032x}")), command);
    // No sender: never asked to stop.
    let (_, stop) = tokio::sync::watch::channel(None);
    executor.run(job, StopSignal::new(stop)).await;
}

pub async fn invoke_latency(bench: &Bench) -> anyhow::Result<InvokeLatency> {
    let rounds = if bench.quick { 30 } else { 200 };
    let mut bare = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        tokio::process::Command::new("sh").args(["-c", "true"]).status().await?;
        bare.push(started.elapsed());
    }
    let executor = local_executor(bench, 1).await?;
    let baseline = match executor.isolation() {
        Isolation::Bubblewrap => Some(BareBwrap::new(bench, &executor)?),
        _ => None,
    };
    let server = bench.start("invoke", &[]).await?;
    server.create_cluster("bench", "c1").await?;
    // Warm the connection and the caches as a client of a running service would find them.
    let warm = server.submit("bench", "c1", "true").await?;
    server.wait_hot(&warm).await?;
    let on_postgres = match &bench.postgres {
        Some(_) => {
            let url = bench.postgres_database("invoke").await?;
            let server = bench.start("invoke-postgres", &["--store", &url]).await?;
            server.create_cluster("bench", "c1").await?;
            let warm = server.submit("bench", "c1", "true").await?;
            server.wait_hot(&warm).await?;
            Some(server)
        }
        None => None,
    };
    let mut end_to_end_postgres = Vec::with_capacity(rounds);
    // All four take turns, round by round, so a machine that slows down mid-run slows them alike
    // (this one's bubblewrap p50 moves by 2 ms between runs); the idle server runs throughout.
    let mut bare_bwrap = Vec::with_capacity(rounds);
    let mut sandboxed = Vec::with_capacity(rounds);
    let mut end_to_end = Vec::with_capacity(rounds);
    let mut paced = Vec::with_capacity(rounds);
    for n in 0..rounds {
        if let Some(baseline) = &baseline {
            bare_bwrap.push(baseline.once().await?);
        }
        let started = Instant::now();
        run_job(&executor, n, "true").await;
        sandboxed.push(started.elapsed());
        let started = Instant::now();
        let location = server.submit("bench", "c1", "true").await?;
        server.wait_hot(&location).await?;
        end_to_end.push(started.elapsed());
        let started = Instant::now();
        let location = server.submit("bench", "c1", "true").await?;
        server.wait_polling(&location, Duration::from_millis(2)).await?;
        paced.push(started.elapsed());
        if let Some(server) = &on_postgres {
            let started = Instant::now();
            let location = server.submit("bench", "c1", "true").await?;
            server.wait_hot(&location).await?;
            end_to_end_postgres.push(started.elapsed());
        }
    }
    let bare_bwrap = baseline.map(|_| summarize(&bare_bwrap));
    Ok(InvokeLatency {
        bare: summarize(&bare),
        bare_bwrap,
        sandboxed: summarize(&sandboxed),
        kubeinvoke: summarize(&end_to_end),
        kubeinvoke_paced: summarize(&paced),
        kubeinvoke_postgres: on_postgres.map(|_| summarize(&end_to_end_postgres)),
        isolation: executor.isolation().as_str().to_string(),
    })
}

/// The unprivileged uid the bare bubblewrap baseline runs as (Debian's `nobody`).
const NOBODY: u32 = 65534;

/// The executor's own bubblewrap command line, started the way the executor starts it (its
/// `clone(CLONE_VM | CLONE_VFORK)` spawner), without anything around it.
struct BareBwrap {
    process: ProcessSpec,
}

impl BareBwrap {
    fn new(bench: &Bench, executor: &LocalExecutor) -> anyhow::Result<Self> {
        let root = bench.launch("bare-bwrap", &[]).data_dir;
        let (workdir, tmpdir) = (root.join("home"), root.join("tmp"));
        std::fs::create_dir_all(&workdir)?;
        std::fs::create_dir_all(&tmpdir)?;
        let limits = ExecLimits::default();
        let spec = SandboxSpec {
            workdir: &workdir,
            tmpdir: executor.sandbox().needs_tmpdir().then_some(tmpdir.as_path()),
            shell_command: "true",
            has_kubeconfig: false,
            limits: &limits,
            uid: None,
            environment: &[],
            info_fd: None,
        };
        let sandboxed = executor.sandbox().command(&spec);
        let as_root = rustix::process::geteuid().is_root();
        if as_root {
            for dir in [&root, &workdir, &tmpdir] {
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
            }
        }
        // The same program and arguments; no limits, no working directory of its own.
        let mut process = ProcessSpec::new(sandboxed.program());
        process.args(sandboxed.get_args());
        if as_root {
            process.uid(NOBODY);
        }
        Ok(BareBwrap { process })
    }

    /// One spawn, awaited.
    async fn once(&self) -> anyhow::Result<Duration> {
        let output = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        let started = Instant::now();
        let mut child = spawn(&self.process, Stdio::null_in_shared_out(output.into())?)?;
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "bare bwrap failed: {status}");
        Ok(started.elapsed())
    }
}

/// Completions per second of `commands` trivial commands submitted at once.
pub async fn throughput(bench: &Bench) -> anyhow::Result<Throughput> {
    let commands = if bench.quick { 200 } else { 1000 };
    let max_running = 4;
    let sandboxed_per_sec = executor_rate(bench, commands, max_running).await?;
    let running = max_running.to_string();
    let server = bench.start("throughput", &["--max-running", &running, "--queue-capacity", "5000"]).await?;
    let kubeinvoke_per_sec = server_rate(&[&server], commands).await?;
    Ok(Throughput { commands, max_running, sandboxed_per_sec, kubeinvoke_per_sec })
}

async fn executor_rate(bench: &Bench, commands: usize, max_running: usize) -> anyhow::Result<f64> {
    let executor = Arc::new(local_executor(bench, max_running).await?);
    let slots = Arc::new(Semaphore::new(max_running));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..commands {
        let (executor, permit) = (executor.clone(), slots.clone().acquire_owned().await?);
        tasks.spawn(async move {
            run_job(&executor, n, "true").await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(commands as f64 / started.elapsed().as_secs_f64())
}

/// Submits `commands` trivial commands round-robin over `servers` (32 submitters at once), and
/// measures from the first submission until the last result is final.
pub async fn server_rate(servers: &[&Target], commands: usize) -> anyhow::Result<f64> {
    for server in servers.iter().take(1) {
        server.create_cluster("bench", "rate").await?;
    }
    let started = Instant::now();
    let submitted = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(commands)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures_util::future::try_join_all((0..32).map(|_| {
        let (submitted, next) = (submitted.clone(), next.clone());
        async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= commands {
                    return anyhow::Ok(());
                }
                let location = servers[n % servers.len()].submit("bench", "rate", "true").await?;
                submitted.lock().await.push((n, location));
            }
        }
    }))
    .await?;
    let submitted = std::mem::take(&mut *submitted.lock().await);
    // Results are polled gently (50 ms), so the polling does not steal the cores being measured.
    futures_util::future::try_join_all(submitted.chunks(commands.div_ceil(8)).map(|chunk| async move {
        for (n, location) in chunk {
            servers[n % servers.len()].wait_polling(location, Duration::from_millis(50)).await?;
        }
        anyhow::Ok(())
    }))
    .await?;
    Ok(commands as f64 / started.elapsed().as_secs_f64())
}
