//! Output cap, timeout and the bounded queue.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn output_beyond_the_cap_is_cut_with_a_plain_notice() {
    let s = Server::start(&["--log-cap-bytes", "1000"]).await;
    let result = s.run("head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo tail-line").await;
    let p = &result["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(p["exitCode"], 0);
    let logs = p["logs"].as_str().unwrap();
    assert!(logs.starts_with(&"x".repeat(1000)), "keeps the head");
    assert!(!logs.contains("xxxxx\nx"), "nothing past the cap is kept");
    assert!(!logs.contains("tail-line"));
    assert!(logs.contains("output truncated"), "{logs}");
    assert!(logs.contains("199011 more bytes were discarded"), "{}", &logs[1000..]);
    assert!(logs.len() < 1200, "{}", logs.len());
}

#[tokio::test]
async fn default_cap_is_512_kib() {
    let s = Server::start(&[]).await;
    let result = s.run("head -c 600000 /dev/zero | tr '\\0' 'y'").await;
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert_eq!(logs.find('\n'), Some(512 * 1024));
    assert!(logs.contains("output truncated"));
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_failed() {
    let s = Server::start(&["--command-timeout", "1s"]).await;
    let started = Instant::now();
    let result = s.run("echo before; sleep 30 & sleep 30; echo never").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let p = &result["properties"];
    assert_eq!(p["provisioningState"], "Failed");
    assert_eq!(p["reason"], "Timeout");
    let logs = p["logs"].as_str().unwrap();
    assert!(logs.starts_with("before\n"), "{logs}");
    assert!(logs.contains("timed out after 1s"), "{logs}");
    assert!(!logs.contains("never"));
    assert!(p["finishedAt"].is_string());
}

#[tokio::test]
async fn a_limit_hit_before_the_timeout_is_named_with_it() {
    // What bash prints when a fork bomb meets the process limit, then the script runs out its time.
    let s = Server::start(&["--command-timeout", "1s", "--max-processes", "64"]).await;
    let result = s.run("echo 'bash: fork: retry: Resource temporarily unavailable'; sleep 30").await;
    let p = &result["properties"];
    assert_eq!(p["reason"], "Timeout");
    let logs = p["logs"].as_str().unwrap();
    assert!(logs.contains("process limit of 64; then the command timed out after 1s"), "{logs}");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = Server::start(&["--max-running", "1", "--queue-capacity", "1", "--retry-after", "3"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let running = s.submit("rg", "c1", json!({"command": "sleep 3"})).await;
    s.wait_for_state(&running, "Running").await;
    let queued = s.submit("rg", "c1", json!({"command": "echo queued"})).await;
    let r = s.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "echo refused"})).await;
    let message = r.assert_error(429, "TooManyRequests");
    assert!(message.contains("Retry after 3 seconds"), "{message}");
    assert_eq!(r.header("retry-after"), Some("3"));
    // Nothing accepted was lost, and the queue opens again.
    assert_eq!(s.wait(&queued).await["properties"]["logs"], "queued\n");
    let later = s.submit("rg", "c1", json!({"command": "echo later"})).await;
    assert_eq!(s.wait(&later).await["properties"]["logs"], "later\n");
}
