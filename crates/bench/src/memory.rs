//! Memory under pressure: the server's peak resident memory while one command writes 1 GiB to
//! stdout, and while 1,000 clients poll a result.

use std::time::Duration;

use crate::bench::Bench;
use crate::load::{WrkResult, wrk};
use crate::reads::server_with_result;

pub struct Memory {
    pub idle_rss: u64,
    /// Peak RSS (`VmHWM`) of a fresh server across a 1 GiB-output command.
    pub flood_peak_rss: u64,
    pub flood_seconds: f64,
    pub flood_logs_bytes: usize,
    /// Peak RSS of a fresh server across 1,000 polling connections.
    pub pollers_peak_rss: u64,
    pub pollers: WrkResult,
}

pub const FLOOD_COMMAND: &str = "head -c 1073741824 /dev/zero | tr '\\0' y";

pub async fn run(bench: &Bench) -> anyhow::Result<Memory> {
    let server = bench.start("flood", &[]).await?;
    server.create_cluster("bench", "c1").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = server.memory().0;
    let started = std::time::Instant::now();
    let location = server.submit("bench", "c1", FLOOD_COMMAND).await?;
    let result = server.wait_polling(&location, Duration::from_millis(200)).await?;
    let flood_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(result["properties"]["exitCode"] == 0, "the flood failed: {}", result["properties"]["reason"]);
    let flood_logs_bytes = result["properties"]["logs"].as_str().map_or(0, str::len);
    let flood_peak_rss = server.memory().1;
    drop(server);

    let (server, location) = server_with_result(bench, "pollers", &[]).await?;
    let pollers = wrk(&location, Some(&server.token), 1000, bench.measure_for(), None).await?;
    let pollers_peak_rss = server.memory().1;
    Ok(Memory { idle_rss, flood_peak_rss, flood_seconds, flood_logs_bytes, pollers_peak_rss, pollers })
}
