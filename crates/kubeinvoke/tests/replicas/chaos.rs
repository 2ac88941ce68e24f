//! The chaos loop: replicas on one PostgreSQL server take a steady stream of commands while
//! replicas are killed with SIGKILL and restarted and the database is stopped and started.
//! Afterwards every command is final, none ran twice, every one that did not finish says why,
//! and no answer was a 5xx other than 503.
//!
//! CI runs it briefly; `scripts/chaos.sh` runs it for longer (`KUBEINVOKE_CHAOS_SECONDS`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::*;
use crate::{path_of, replicas};
use kubeinvoke_testkit::private_postgres::PrivatePostgres;

/// What the submitter saw.
#[derive(Default)]
struct Tally {
    /// token → path of the accepted command's result.
    accepted: HashMap<String, String>,
    unavailable: usize,
    unreachable: usize,
    /// Answers that break the rules (a 5xx other than 503, an unexpected 4xx).
    violations: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_database_die_and_no_command_is_lost_or_run_twice() {
    let seconds: u64 = std::env::var("KUBEINVOKE_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let pg = Arc::new(pg);
    let url = pg.create_database("chaos").await;
    // The witness: each run appends its token to a file outside the sandbox (so `--sandbox none`;
    // claims and leases do not depend on the sandbox).
    let witness_dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(witness_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let witness = witness_dir.path().join("ran");
    std::fs::write(&witness, "").unwrap();
    std::fs::set_permissions(&witness, std::fs::Permissions::from_mode(0o666)).unwrap();
    let args = ["--sandbox", "none", "--lease", "2s", "--queue-capacity", "10000", "--shutdown-grace", "1s"];
    let all = replicas(&url, 3, &args).await;
    all[0].create_cluster("rg", "c1", json!({})).await;
    let token = all[0].token.clone();
    let fleet: Arc<Mutex<Vec<Option<Server>>>> = Arc::new(Mutex::new(all.into_iter().map(Some).collect()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let submitter = tokio::spawn({
        let (fleet, tally, stop, witness) = (fleet.clone(), tally.clone(), stop.clone(), witness.clone());
        async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let command_token = format!("cmd-{n}");
                let request = {
                    let fleet = fleet.lock().unwrap();
                    let live: Vec<&Server> = fleet.iter().flatten().collect();
                    live.get(n % live.len().max(1)).map(|s| {
                        let command =
                            format!("echo {command_token} >> {} && sleep 0.$((RANDOM % 9))", witness.display());
                        s.request(
                            Method::POST,
                            &format!("{}/runCommand", cluster_path("rg", "c1")),
                            Some(json!({"command": command})),
                        )
                        .timeout(Duration::from_secs(20))
                    })
                };
                if let Some(request) = request {
                    let answer = request.send().await;
                    let mut tally = tally.lock().unwrap();
                    match answer {
                        Ok(r) if r.status() == 202 => {
                            let location = r.headers()["location"].to_str().unwrap().to_string();
                            tally.accepted.insert(command_token, path_of(&location));
                        }
                        Ok(r) if r.status() == 503 => tally.unavailable += 1,
                        Ok(r) => tally.violations.push(format!("{command_token}: {}", r.status())),
                        Err(_) => tally.unreachable += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        }
    });

    // The chaos: kill -9 and restart a replica, or stop the database for a while, in turn.
    let started = Instant::now();
    let mut round = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(1500 + (round as u64 % 3) * 500)).await;
        if round % 3 == 2 {
            let db = pg.clone();
            tokio::task::spawn_blocking(move || db.stop()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let db = pg.clone();
            tokio::task::spawn_blocking(move || db.resume()).await.unwrap();
        } else {
            let victim = round % 3;
            let server = fleet.lock().unwrap()[victim].take().unwrap();
            let mut restarted = server.restart().await;
            restarted.token = token.clone();
            fleet.lock().unwrap()[victim] = Some(restarted);
        }
        round += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    submitter.await.unwrap();

    // Every accepted command reaches a final state, read through a live replica.
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let reader = fleet.lock().unwrap()[0].take().unwrap();
    let mut outcomes: HashMap<String, (String, Option<i64>, String)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for (command_token, path) in &tally.accepted {
        loop {
            let r = reader.get(path).await;
            assert!(r.status == 200 || r.status == 202, "{command_token}: {} {}", r.status, r.text);
            let properties = r.json()["properties"].clone();
            let state = properties["provisioningState"].as_str().unwrap().to_string();
            if r.status == 200 {
                let reason = properties["reason"].as_str().unwrap_or_default().to_string();
                outcomes.insert(command_token.clone(), (state, properties["exitCode"].as_i64(), reason));
                break;
            }
            assert!(Instant::now() < deadline, "{command_token} never became final: {}", r.text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut runs: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&witness).unwrap_or_default().lines() {
        *runs.entry(line.to_string()).or_default() += 1;
    }
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "commands ran more than once: {twice:?}");
    let mut by_state: HashMap<String, usize> = HashMap::new();
    for (command_token, (state, exit_code, reason)) in &outcomes {
        *by_state.entry(format!("{state} {reason}").trim().to_string()).or_default() += 1;
        match state.as_str() {
            "Succeeded" => {
                assert_eq!(*exit_code, Some(0), "{command_token}");
                assert_eq!(runs.get(command_token), Some(&1), "{command_token} succeeded without running");
            }
            "Failed" => assert!(
                ["WorkerLost", "Interrupted", "ServerShutdown"].contains(&reason.as_str()),
                "{command_token} failed without a reason that explains it: {reason:?}"
            ),
            other => panic!("{command_token} ended {other}"),
        }
    }
    assert!(tally.violations.is_empty(), "answers other than 202/503: {:?}", tally.violations);
    let succeeded = outcomes.values().filter(|(s, _, _)| s == "Succeeded").count();
    assert!(succeeded * 2 > outcomes.len(), "most commands ran to the end: {by_state:?}");
    eprintln!(
        "chaos: {seconds} s, {round} rounds, {} accepted ({by_state:?}), {} answered 503, {} unreachable",
        tally.accepted.len(),
        tally.unavailable,
        tally.unreachable
    );
}
