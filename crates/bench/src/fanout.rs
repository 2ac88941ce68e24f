//! A fan-out run against the same work done by a client: N clusters, `true` on each, at most C at
//! a time — one `POST {scope}/…/runCommand` watched to its end, against N single commands that a
//! client submits and polls with C in flight, on the same server, in the same run. Both poll every
//! 10 ms, so the difference is where the scheduling happens (server-side driver vs the client).
//!
//! On one server with SQLite, or on `replicas` servers sharing one PostgreSQL database: the
//! client then spreads its commands over them, the run's targets are claimed by all of them, and
//! the run's `GET`s go to each in turn (the replica that drives it and the others).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;

use crate::bench::Bench;
use crate::target::{SUB, Target};

pub struct FanOut {
    /// Servers sharing the work: 1 is one server on SQLite, more share one PostgreSQL database.
    pub replicas: usize,
    pub clusters: usize,
    pub concurrency: usize,
    /// Wall time from the first submit to the last result final, per repetition.
    pub fan_out: Vec<Duration>,
    pub client_side: Vec<Duration>,
    /// Every `GET` of the run while it ran (the counts and the first page of targets), over all
    /// repetitions.
    pub run_reads: Vec<Duration>,
    /// The `GET` of the run's second page of targets (its `targetsNextLink`) after each of those.
    pub target_pages: Vec<Duration>,
    /// Server RSS (bytes, summed over the replicas) after the clusters were registered, and
    /// after the last run.
    pub rss_before: u64,
    pub rss_after: u64,
    /// (anonymous, file-backed) resident bytes before and after.
    pub kinds_before: (u64, u64),
    pub kinds_after: (u64, u64),
    /// Selecting targets by tag among `selection_fleet` clusters: the fan-out POST (its tag
    /// matches one cluster) answered, per sample.
    pub selection_fleet: usize,
    pub selection: Vec<Duration>,
}

const POLL: Duration = Duration::from_millis(10);

pub async fn run(
    bench: &Bench,
    clusters: usize,
    concurrency: usize,
    selection_fleet: usize,
    replicas: usize,
) -> anyhow::Result<FanOut> {
    let max_running = concurrency.to_string();
    let args = ["--max-running", max_running.as_str(), "--queue-capacity", "1024"];
    let servers = match replicas {
        0 | 1 => vec![bench.start("fanout", &args).await?],
        n => {
            let url = bench.postgres_database("fanout").await?;
            crate::replicas::start_replicas(bench, &url, n, &args).await?
        }
    };
    let server = &servers[0];
    server.put(&format!("/subscriptions/{SUB}/resourceGroups/fleet"), json!({"location": "westeurope"})).await?;
    for i in 0..clusters {
        let body = json!({"location": "westeurope", "tags": {"bench": "fanout"}, "properties": {}});
        server.put(&crate::target::cluster_path("fleet", &format!("c{i:04}")), body).await?;
    }
    let memory = || {
        let (rss, kinds) = (servers.iter().map(|s| s.memory().0).sum(), servers.iter().map(Target::memory_kinds));
        (rss, kinds.fold((0, 0), |(a, f), (a2, f2)| (a + a2, f + f2)))
    };
    let repetitions = if bench.quick { 1 } else { 3 };
    let (mut fan_out, mut client_side, mut run_reads, mut target_pages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (rss_before, kinds_before) = memory();
    for _ in 0..repetitions {
        // Client-side: C workers, each submitting the next cluster's command and polling it.
        let started = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..clusters)
            .map(|i| {
                let server = &servers[i % servers.len()];
                async move {
                    let location = server.submit("fleet", &format!("c{i:04}"), "true").await?;
                    let result = server.wait_polling(&location, POLL).await?;
                    anyhow::ensure!(result["properties"]["exitCode"] == 0, "a command failed: {result}");
                    Ok(())
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        client_side.push(started.elapsed());

        // Server-side: one run.
        let started = Instant::now();
        let submitted = server
            .client
            .post(server.url(&format!(
                "/subscriptions/{SUB}/resourceGroups/fleet/providers/Microsoft.ContainerService/runCommand"
            )))
            .bearer_auth(&server.token)
            .json(&json!({"command": "true", "targets": {"tags": {"bench": "fanout"}}, "maxConcurrency": concurrency}))
            .send()
            .await?;
        anyhow::ensure!(submitted.status() == 202, "fan-out: {} {}", submitted.status(), submitted.text().await?);
        let location = submitted.headers().get("location").context("Location")?.to_str()?.to_string();
        let mut polls = 0;
        let run = loop {
            // Each replica in turn: the one driving the run and the others, from the store.
            let (server, location) =
                (&servers[polls % servers.len()], on_replica(&location, &servers[polls % servers.len()]));
            polls += 1;
            let asked = Instant::now();
            let r = server.client.get(&location).bearer_auth(&server.token).send().await?;
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await?;
            run_reads.push(asked.elapsed());
            if let Some(next) = body["properties"]["targetsNextLink"].as_str() {
                let asked = Instant::now();
                let r = server.client.get(on_replica(next, server)).bearer_auth(&server.token).send().await?;
                anyhow::ensure!(r.status() == 200, "a page of targets: {}", r.status());
                r.bytes().await?;
                target_pages.push(asked.elapsed());
            }
            match status {
                200 => break body,
                202 => tokio::time::sleep(POLL).await,
                other => anyhow::bail!("polling the run: {other} {body}"),
            }
        };
        fan_out.push(started.elapsed());
        anyhow::ensure!(
            run["properties"]["counts"]["Succeeded"] == clusters
                && run["properties"]["provisioningState"] == "Succeeded",
            "the run did not succeed everywhere: {}",
            run["properties"]["counts"]
        );
    }
    let (rss_after, kinds_after) = memory();

    // Selection: more clusters, one of them tagged apart; a run that selects it by tag must look
    // at all of them.
    for i in clusters..selection_fleet {
        let body = json!({"location": "westeurope", "tags": {"bench": "fleet"}, "properties": {}});
        server.put(&crate::target::cluster_path("fleet", &format!("c{i:05}")), body).await?;
    }
    let body = json!({"location": "westeurope", "tags": {"bench": "needle"}, "properties": {}});
    server.put(&crate::target::cluster_path("fleet", "needle"), body).await?;
    let mut selection = Vec::new();
    for _ in 0..if bench.quick { 3 } else { 11 } {
        let asked = Instant::now();
        let submitted = server
            .client
            .post(server.url(&format!(
                "/subscriptions/{SUB}/resourceGroups/fleet/providers/Microsoft.ContainerService/runCommand"
            )))
            .bearer_auth(&server.token)
            .json(&json!({"command": "true", "targets": {"tags": {"bench": "needle"}}}))
            .send()
            .await?;
        selection.push(asked.elapsed());
        anyhow::ensure!(submitted.status() == 202, "selection: {} {}", submitted.status(), submitted.text().await?);
        let location = submitted.headers().get("location").context("Location")?.to_str()?.to_string();
        let run = server.wait_polling(&location, POLL).await?;
        anyhow::ensure!(
            run["properties"]["counts"]["Succeeded"] == 1,
            "the needle run: {}",
            run["properties"]["counts"]
        );
    }
    Ok(FanOut {
        replicas: servers.len(),
        clusters,
        concurrency,
        fan_out,
        client_side,
        run_reads,
        target_pages,
        rss_before,
        rss_after,
        kinds_before,
        kinds_after,
        selection_fleet: selection_fleet.max(clusters + 1),
        selection,
    })
}

/// `link` (an absolute URL one replica wrote) asked of `server` instead.
fn on_replica(link: &str, server: &Target) -> String {
    match link.split_once("://").and_then(|(_, rest)| rest.split_once('/')) {
        Some((_, path)) => format!("{}/{path}", server.base),
        None => link.to_string(),
    }
}
