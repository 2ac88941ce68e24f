//! A fan-out run against the same work done by a client: N clusters, `true` on each, at most C at
//! a time — one `POST {scope}/…/runCommand` watched to its end, against N single commands that a
//! client submits and polls with C in flight, on the same server, in the same run. Both poll every
//! 10 ms, so the difference is where the scheduling happens (server-side driver vs the client).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;

use crate::bench::Bench;
use crate::target::SUB;

pub struct FanOut {
    pub clusters: usize,
    pub concurrency: usize,
    /// Wall time from the first submit to the last result final, per repetition.
    pub fan_out: Vec<Duration>,
    pub client_side: Vec<Duration>,
}

const POLL: Duration = Duration::from_millis(10);

pub async fn run(bench: &Bench, clusters: usize, concurrency: usize) -> anyhow::Result<FanOut> {
    let max_running = concurrency.to_string();
    let server = bench.start("fanout", &["--max-running", &max_running, "--queue-capacity", "1024"]).await?;
    server.put(&format!("/subscriptions/{SUB}/resourceGroups/fleet"), json!({"location": "westeurope"})).await?;
    for i in 0..clusters {
        let body = json!({"location": "westeurope", "tags": {"bench": "fanout"}, "properties": {}});
        server.put(&crate::target::cluster_path("fleet", &format!("c{i:04}")), body).await?;
    }
    let repetitions = if bench.quick { 1 } else { 3 };
    let (mut fan_out, mut client_side) = (Vec::new(), Vec::new());
    for _ in 0..repetitions {
        // Client-side: C workers, each submitting the next cluster's command and polling it.
        let started = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..clusters)
            .map(|i| {
                let server = &server;
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
        let run = server.wait_polling(&location, POLL).await?;
        fan_out.push(started.elapsed());
        anyhow::ensure!(
            run["properties"]["counts"]["Succeeded"] == clusters
                && run["properties"]["provisioningState"] == "Succeeded",
            "the run did not succeed everywhere: {}",
            run["properties"]["counts"]
        );
    }
    Ok(FanOut { clusters, concurrency, fan_out, client_side })
}
