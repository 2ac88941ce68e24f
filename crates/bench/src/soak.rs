//! Soak: mixed load for a long while — result polling, submissions of succeeding, failing and
//! timing-out commands, bad requests — then checks: no 5xx, the server's own memory flat after warm-up, every
//! submitted command final.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bench::Bench;
use crate::load::{WrkResult, wrk};
use crate::reads::server_with_result;
use crate::target::cluster_path;

pub struct Soak {
    pub duration: Duration,
    pub statuses: BTreeMap<u16, u64>,
    pub server_errors: u64,
    pub submitted: usize,
    pub unfinished: usize,
    /// The server's memory and its database's size, every 10 s.
    pub memory: Vec<MemorySample>,
    pub polling: WrkResult,
}

/// What the server holds at one moment, split by kind: its own memory (heap, stacks) and the
/// file pages mapped into it, SQLite's memory-mapped database among them, which grow with the
/// database file and which the kernel may reclaim at will.
#[derive(Debug, Clone, Copy)]
pub struct MemorySample {
    pub at_secs: f64,
    pub rss: u64,
    pub anonymous: u64,
    pub file_backed: u64,
    /// The database file and its WAL.
    pub database: u64,
}

pub async fn run(bench: &Bench, duration: Duration) -> anyhow::Result<Soak> {
    let (server, location) =
        server_with_result(bench, "soak", &["--command-timeout", "2s", "--queue-capacity", "100"]).await?;
    let polling = wrk(&location, Some(&server.token), 8, duration, None);
    let started = Instant::now();
    let driver = async {
        let mut statuses = BTreeMap::new();
        let mut submitted = Vec::new();
        let mut memory = Vec::new();
        let mut next_sample = Duration::ZERO;
        let mut round = 0u64;
        while started.elapsed() < duration {
            if started.elapsed() >= next_sample {
                let (anonymous, file_backed) = server.memory_kinds();
                memory.push(MemorySample {
                    at_secs: started.elapsed().as_secs_f64(),
                    rss: server.memory().0,
                    anonymous,
                    file_backed,
                    database: crate::target::file_bytes(&server.data_dir, "kubeinvoke.db"),
                });
                next_sample += Duration::from_secs(10);
            }
            let run = format!("{}/runCommand", cluster_path("bench", "c1"));
            let request = match round % 6 {
                0 => server.client.post(server.url(&run)).json(&json!({"command": "echo ok"})),
                1 => server.client.post(server.url(&run)).json(&json!({"command": "echo failing; exit 3"})),
                2 => server.client.post(server.url(&run)).json(&json!({"command": "sleep 5"})),
                3 => server.client.post(server.url(&run)).body("{not json"),
                4 => server.client.get(format!("{}{}?api-version=bad", server.base, cluster_path("bench", "c1"))),
                _ => server.client.get(server.url(&cluster_path("bench", "missing"))),
            };
            let reply = request.bearer_auth(&server.token).header("content-type", "application/json").send().await?;
            let status = reply.status().as_u16();
            *statuses.entry(status).or_insert(0) += 1;
            if status == 202
                && let Some(location) = reply.headers().get("location").and_then(|v| v.to_str().ok())
            {
                submitted.push(location.to_string());
            }
            // Unauthenticated probes too.
            if round % 10 == 0 {
                let anonymous = server.client.get(server.url(&cluster_path("bench", "c1"))).send().await?;
                *statuses.entry(anonymous.status().as_u16()).or_insert(0) += 1;
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok((statuses, submitted, memory))
    };
    let (polling, driven) = tokio::join!(polling, driver);
    let (polling, (statuses, submitted, memory)) = (polling?, driven?);
    let mut unfinished = 0;
    for location in &submitted {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let reply = server.client.get(location).bearer_auth(&server.token).send().await?;
            if reply.status() == 200 {
                break;
            }
            if Instant::now() > deadline {
                unfinished += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let server_errors = statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum::<u64>() + polling.non_2xx;
    Ok(Soak { duration, statuses, server_errors, submitted: submitted.len(), unfinished, memory, polling })
}
