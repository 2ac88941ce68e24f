//! Result reads: `GET …/commandResults/{id}` of a finished result with 1 KiB of logs, 64
//! keep-alive connections, against the baseline serving the same bytes with the same certificate.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bench::Bench;
use crate::load::{WrkResult, wrk};
use crate::target::Target;

pub const CONNECTIONS: usize = 64;
/// Rounds in which the baselines, kubeinvoke and `/healthz` take turns.
pub const ROUNDS: usize = 3;
/// A command whose result has exactly 1 KiB of logs.
pub const ONE_KIB_COMMAND: &str = "head -c 1024 /dev/zero | tr '\\0' x";

pub struct Reads {
    /// The baseline sent the very request kubeinvoke gets (its path, its bearer token).
    pub baseline: WrkResult,
    /// The baseline sent `GET /` without a token: what the request's own bytes cost.
    pub baseline_bare: WrkResult,
    pub kubeinvoke: WrkResult,
    /// `/healthz` of the same server: HTTP and TLS without auth or storage.
    pub healthz: WrkResult,
    /// One full token validation (RS256 signature + claims), measured in-process.
    pub validation_us: f64,
    /// One validation of a token already validated (the cache hit every later request takes).
    pub cached_validation_us: f64,
    pub body_bytes: usize,
}

/// Starts a server, stores one 1 KiB result and returns the server and the result's URL.
pub async fn server_with_result(bench: &Bench, name: &str, args: &[&str]) -> anyhow::Result<(Target, String)> {
    let server = bench.start(name, args).await?;
    server.create_cluster("bench", "c1").await?;
    let location = server.submit("bench", "c1", ONE_KIB_COMMAND).await?;
    let result = server.wait_polling(&location, Duration::from_millis(50)).await?;
    anyhow::ensure!(result["properties"]["logs"].as_str().map(str::len) == Some(1024), "unexpected result {result}");
    Ok((server, location))
}

pub async fn run(bench: &Bench) -> anyhow::Result<Reads> {
    let (server, location) = server_with_result(bench, "reads", &[]).await?;
    let body = server.client.get(&location).bearer_auth(&server.token).send().await?.bytes().await?;
    let body_file = server.data_dir.join("../baseline-body.json");
    std::fs::write(&body_file, &body)?;

    let mut baseline = start_baseline(&server, &body_file).await?;
    // The three take turns, round by round: this machine's speed drifts by a fifth over a
    // minute, and measuring one after the other put that drift into the ratio.
    let rounds = if bench.quick { 1 } else { ROUNDS };
    let each = bench.measure_for() / rounds as u32;
    let healthz_url = format!("{}/healthz", server.base);
    // The same request bytes as kubeinvoke's reads: a 1 KiB token and the long path cost the
    // client, the kernel and TLS the same whoever answers them.
    let path_and_query = &location[location.find("/subscriptions/").context("a result path")?..];
    let baseline_same = format!("{}{}", baseline.1.trim_end_matches('/'), path_and_query);
    let (mut base_runs, mut bare_runs, mut own_runs, mut healthz_runs) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        base_runs.push(wrk(&baseline_same, Some(&server.token), CONNECTIONS, each, None).await?);
        bare_runs.push(wrk(&baseline.1, None, CONNECTIONS, each, None).await?);
        own_runs.push(wrk(&location, Some(&server.token), CONNECTIONS, each, None).await?);
        healthz_runs.push(wrk(&healthz_url, None, CONNECTIONS, each, None).await?);
    }
    baseline.0.kill().await?;
    let (validation_us, cached_validation_us) = validation_cost(&server).await?;
    Ok(Reads {
        baseline: WrkResult::combined(&base_runs),
        baseline_bare: WrkResult::combined(&bare_runs),
        kubeinvoke: WrkResult::combined(&own_runs),
        healthz: WrkResult::combined(&healthz_runs),
        validation_us,
        cached_validation_us,
        body_bytes: body.len(),
    })
}

/// The baseline as its own process, like the server it is compared with.
async fn start_baseline(server: &Target, body: &std::path::Path) -> anyhow::Result<(tokio::process::Child, String)> {
    let tls = server.data_dir.join("tls");
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("baseline")
        .arg("--cert")
        .arg(tls.join("server.pem"))
        .arg("--key")
        .arg(tls.join("server.key"))
        .arg("--body")
        .arg(body)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.next_line().await?.context("the baseline printed nothing")?;
    let url = line.strip_prefix("listening on ").context("unexpected baseline output")?.to_string();
    Ok((child, format!("{url}/")))
}

/// Microseconds per validation of the server's real token with the server's own key and code:
/// the full check a new token gets, and the cached check of a token seen before.
async fn validation_cost(server: &Target) -> anyhow::Result<(f64, f64)> {
    let store: std::sync::Arc<dyn kubeinvoke::store::Store> =
        std::sync::Arc::new(kubeinvoke::store::SqliteStore::open(&server.data_dir.join("../validation.db"))?);
    let instance: serde_json::Value = serde_json::from_slice(&std::fs::read(server.data_dir.join("instance.json"))?)?;
    let tenant = instance["tenantId"].as_str().context("tenantId")?.to_string();
    let config = kubeinvoke::identity::IdentityConfig { builtin_issuer: true, ..Default::default() };
    let identity = kubeinvoke::identity::Identity::new(&config, &server.data_dir, tenant, store).await?;
    let audiences = kubeinvoke::identity::tokens::ARM_AUDIENCES;
    identity.validate_uncached(&server.token, &audiences).await.context("the token does not validate")?;
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        identity.validate_uncached(&server.token, &audiences).await?;
    }
    let uncached = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    identity.validate(&server.token, &audiences).await?;
    let started = Instant::now();
    for _ in 0..rounds {
        identity.validate(&server.token, &audiences).await?;
    }
    let cached = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    Ok((uncached, cached))
}
