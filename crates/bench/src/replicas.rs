//! Scale-out on one machine: result reads and command throughput with 1 and with 3 replicas
//! sharing one PostgreSQL database, and how long a killed replica's command takes to be
//! declared `WorkerLost`.

use std::time::{Duration, Instant};

use crate::bench::Bench;
use crate::commands::server_rate;
use crate::load::{WrkResult, wrk};
use crate::reads::{CONNECTIONS, ONE_KIB_COMMAND};
use crate::target::Target;

pub struct ReplicaPoint {
    pub replicas: usize,
    /// Summed over the replicas; latencies are the worst replica's.
    pub reads: WrkResult,
    pub commands_per_sec: f64,
    pub commands: usize,
}

pub struct LeaseExpiry {
    pub lease: Duration,
    pub detected_after: Duration,
}

pub async fn run(bench: &Bench, replicas: usize) -> anyhow::Result<ReplicaPoint> {
    let url = bench.postgres_database(&format!("replicas{replicas}")).await?;
    let servers = start_replicas(bench, &url, replicas, &["--queue-capacity", "5000"]).await?;
    servers[0].create_cluster("bench", "c1").await?;
    let location = servers[0].submit("bench", "c1", ONE_KIB_COMMAND).await?;
    servers[0].wait_polling(&location, Duration::from_millis(50)).await?;
    let path = location.split_once("://").and_then(|(_, r)| r.split_once('/')).map(|(_, p)| p.to_string());
    let path = path.unwrap_or_default();
    let per_replica = CONNECTIONS.div_ceil(replicas);
    let runs = futures_util::future::try_join_all(servers.iter().map(|s| {
        let url = format!("{}/{path}", s.base);
        async move { wrk(&url, Some(&s.token), per_replica, bench.measure_for(), None).await }
    }))
    .await?;
    let reads = WrkResult {
        requests_per_sec: runs.iter().map(|r| r.requests_per_sec).sum(),
        p50_ms: runs.iter().map(|r| r.p50_ms).fold(0.0, f64::max),
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
        socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
        command: format!("{} (one per replica, at once)", runs[0].command),
    };
    let commands = if bench.quick { 200 } else { 1000 };
    let refs: Vec<&Target> = servers.iter().collect();
    let commands_per_sec = server_rate(&refs, commands).await?;
    Ok(ReplicaPoint { replicas, reads, commands_per_sec, commands })
}

/// `n` servers on one PostgreSQL database (`url`), the first one's token for all of them.
pub(crate) async fn start_replicas(bench: &Bench, url: &str, n: usize, extra: &[&str]) -> anyhow::Result<Vec<Target>> {
    let mut args = vec!["--store", url];
    args.extend_from_slice(extra);
    let mut servers: Vec<Target> = Vec::new();
    for i in 0..n {
        let mut server = bench.start(&format!("replica{i}"), &args).await?;
        if let Some(first) = servers.first() {
            server.token = first.token.clone();
        }
        servers.push(server);
    }
    Ok(servers)
}

/// `kill -9` a replica running a long command; time until a survivor reports `WorkerLost`.
pub async fn lease_expiry(bench: &Bench) -> anyhow::Result<LeaseExpiry> {
    let lease = if bench.quick { Duration::from_secs(3) } else { Duration::from_secs(20) };
    let lease_flag = format!("{}s", lease.as_secs());
    let url = bench.postgres_database("lease").await?;
    let args = ["--lease", lease_flag.as_str(), "--max-running", "1"];
    let mut doomed = start_replicas(bench, &url, 1, &args).await?.remove(0);
    doomed.create_cluster("bench", "c1").await?;
    let location = doomed.submit("bench", "c1", "sleep 600").await?;
    // Running on the doomed replica (the only one yet).
    doomed.wait_for_state(&location, "Running").await?;
    let mut survivor = bench.start("survivor", &["--store", &url, "--lease", &lease_flag]).await?;
    survivor.token = doomed.token.clone();
    let path = location.split_once("://").and_then(|(_, r)| r.split_once('/')).map(|(_, p)| p.to_string());
    let at_survivor = format!("{}/{}", survivor.base, path.unwrap_or_default());
    doomed.kill9();
    let killed = Instant::now();
    let result = survivor.wait_polling(&at_survivor, Duration::from_millis(20)).await?;
    let detected_after = killed.elapsed();
    anyhow::ensure!(result["properties"]["reason"] == "WorkerLost", "unexpected result {result}");
    Ok(LeaseExpiry { lease, detected_after })
}

/// How fast a command submitted at a busy replica is picked up by an idle one.
pub struct Pickup {
    pub how: &'static str,
    pub latency: crate::load::Latency,
}

/// Replica A runs a long command (`--max-running 1`), so `true` submitted at A must be claimed by
/// B: with `LISTEN/NOTIFY`, or by B polling every second (`--work-notify false --work-poll 1s`).
pub async fn pickup(bench: &Bench, notify: bool) -> anyhow::Result<Pickup> {
    let url = bench.postgres_database(if notify { "picknotify" } else { "pickpoll" }).await?;
    let mode: &[&str] = if notify { &[] } else { &["--work-notify", "false", "--work-poll", "1s"] };
    let mut busy_args = vec!["--max-running", "1"];
    busy_args.extend_from_slice(mode);
    let busy = start_replicas(bench, &url, 1, &busy_args).await?.remove(0);
    busy.create_cluster("bench", "c1").await?;
    let long = busy.submit("bench", "c1", "sleep 600").await?;
    busy.wait_for_state(&long, "Running").await?;
    let mut idle_args = vec!["--store", url.as_str()];
    idle_args.extend_from_slice(mode);
    let mut idle = bench.start("idle", &idle_args).await?;
    idle.token = busy.token.clone();
    let rounds = if bench.quick { 5 } else { 30 };
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let started = Instant::now();
        let location = busy.submit("bench", "c1", "true").await?;
        busy.wait_polling(&location, Duration::from_millis(5)).await?;
        samples.push(started.elapsed());
    }
    samples.remove(0); // warm-up
    Ok(Pickup {
        how: if notify { "LISTEN/NOTIFY" } else { "polling every 1 s (±20%)" },
        latency: crate::load::summarize(&samples),
    })
}
