//! The chaos loop: three replicas, each on a test host of its own with its data directory on a
//! small disk, and PostgreSQL on another, take a steady stream of commands and result reads while
//! faults come in turn: a replica killed with SIGKILL and restarted, the database stopped and
//! started, a replica's link to the database cut (shorter and longer than the fence), its link to
//! its clients cut, its database link flapping, its disk filled. The file witness decides what
//! ran; the invariants are checked while it runs and at the end: nothing ran twice, every
//! `Succeeded` command ran once to its end, nothing called lost ran on, every command ended, and
//! no answer was a 5xx other than 503 or 507.
//!
//! CI runs it briefly; `scripts/chaos.sh` runs it for longer (`KUBEINVOKE_CHAOS_SECONDS`) and
//! writes its table to `KUBEINVOKE_CHAOS_REPORT`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::path_of;
use kubeinvoke_testkit::network::TestNetwork;
use kubeinvoke_testkit::private_postgres::PrivatePostgres;
use kubeinvoke_testkit::witness::FileWitness;

const REPLICAS: usize = 3;
/// Each replica's data directory: room for the default reserve (64 MiB) and some.
const DISK: u64 = 128 << 20;

/// The faults, in the order they come.
#[derive(Clone, Copy, Debug)]
enum Fault {
    KillReplica,
    RestartDatabase,
    CutDatabaseLink { seconds: f64 },
    CutClientLink,
    FlapDatabaseLink,
    FillDisk,
}

/// How long after its last mark a command may still not have exited as its executor sees it
/// (the shell's exit, the kernel's reaping, the executor's wake-up on a loaded machine). A
/// replica killed within it ends the command `Interrupted` truthfully, although the witness has
/// its end mark: the mark is the script's last statement, not the process's exit, and the
/// command's process was killed with its replica before its exit was seen.
const EXIT_SEEN_WITHIN_MS: i64 = 250;

const FAULTS: [Fault; 7] = [
    Fault::KillReplica,
    Fault::CutDatabaseLink { seconds: 6.0 },
    Fault::RestartDatabase,
    Fault::FillDisk,
    Fault::CutClientLink,
    Fault::FlapDatabaseLink,
    Fault::CutDatabaseLink { seconds: 1.5 },
];

/// What clients saw, and what broke the rules.
#[derive(Default)]
struct Tally {
    /// token → path of the accepted command's result.
    accepted: HashMap<String, String>,
    /// Answers by kind: `submit 503 ServiceUnavailable`, `read 507 InsufficientStorage`, …
    answers: BTreeMap<String, usize>,
    reads: usize,
    violations: Vec<String>,
}

impl Tally {
    fn answered(&mut self, what: &str, status: u16, text: &str) {
        let code = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        *self.answers.entry(format!("{what} {status} {code}").trim().to_string()).or_default() += 1;
    }
}

/// The replicas, each taken out while it restarts.
type Fleet = Arc<Mutex<Vec<Option<Server>>>>;

fn request(
    fleet: &Fleet,
    n: usize,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<reqwest::RequestBuilder> {
    let fleet = fleet.lock().unwrap();
    let live: Vec<&Server> = fleet.iter().flatten().collect();
    live.get(n % live.len().max(1)).map(|s| s.request(method, path, body).timeout(Duration::from_secs(8)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_the_database_and_the_network_fail_and_no_command_is_lost_run_twice_or_misreported() {
    let seconds: u64 = std::env::var("KUBEINVOKE_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let Some(network) = TestNetwork::create_if_possible(REPLICAS) else {
        return;
    };
    let network = Arc::new(network);
    let pg = Arc::new(PrivatePostgres::start_on_host(&network, "chaos-secret"));
    let url = pg.create_database("chaos").await;
    let witness = Arc::new(FileWitness::create());
    let args =
        ["--store", &url, "--sandbox", "none", "--lease", "4s", "--queue-capacity", "10000", "--shutdown-grace", "1s"];
    let placement = |k: usize| Placement { host: Some(network.replica(k)), disk_bytes: Some(DISK) };
    let mut servers = vec![Server::start_placed(&args, placement(0)).await];
    servers[0].create_cluster("rg", "c1", json!({})).await;
    let token = servers[0].token.clone();
    for k in 1..REPLICAS {
        let mut server = Server::start_placed(&args, placement(k)).await;
        server.token = token.clone();
        servers.push(server);
    }
    let rss_at_start: Vec<u64> = servers.iter().map(Server::rss_kib).collect();
    let fleet: Fleet = Arc::new(Mutex::new(servers.into_iter().map(Some).collect()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let submit_path = format!("{}/runCommand", cluster_path("rg", "c1"));

    // A steady stream: a submission every 120 ms, each its own task so a stalled replica stalls
    // only its own requests.
    let submitter = tokio::spawn({
        let (fleet, tally, stop, witness) = (fleet.clone(), tally.clone(), stop.clone(), witness.clone());
        async move {
            let mut in_flight = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let command_token = format!("cmd-{n}");
                let command = witness.command(&command_token, 0.2 + (n % 9) as f64 * 0.2);
                if let Some(request) = request(&fleet, n, Method::POST, &submit_path, Some(json!({"command": command})))
                {
                    let tally = tally.clone();
                    in_flight.push(tokio::spawn(async move {
                        let answer = request.send().await;
                        let (status, location) = match &answer {
                            Ok(r) => (
                                r.status().as_u16(),
                                r.headers().get("location").map(|l| l.to_str().unwrap().to_string()),
                            ),
                            Err(_) => (0, None),
                        };
                        let text = match answer {
                            Ok(r) => r.text().await.unwrap_or_default(),
                            Err(_) => String::new(),
                        };
                        let mut tally = tally.lock().unwrap();
                        match (status, location) {
                            (202, Some(location)) => {
                                tally.accepted.insert(command_token, path_of(&location));
                            }
                            (0, _) => tally.answered("submit", 0, "unreachable"),
                            (503 | 507, _) => tally.answered("submit", status, &text),
                            _ => tally.violations.push(format!("{command_token}: submit answered {status} {text}")),
                        }
                    }));
                }
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            futures_util::future::join_all(in_flight).await;
        }
    });
    // Reads of results already accepted, from any replica.
    let reader = tokio::spawn({
        let (fleet, tally, stop) = (fleet.clone(), tally.clone(), stop.clone());
        async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let path = {
                    let tally = tally.lock().unwrap();
                    tally.accepted.values().nth(n % tally.accepted.len().max(1)).cloned()
                };
                if let Some(request) = path.and_then(|path| request(&fleet, n / 7, Method::GET, &path, None)) {
                    let answer = request.send().await;
                    let status = answer.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                    let text = match answer {
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    let mut tally = tally.lock().unwrap();
                    tally.reads += 1;
                    match status {
                        200 | 202 => {}
                        0 => tally.answered("read", 0, "unreachable"),
                        503 | 507 => tally.answered("read", status, &text),
                        _ => tally.violations.push(format!("read answered {status} {text}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    // The witness, checked while it runs: nothing may start twice.
    let ran_twice = Arc::new(Mutex::new(HashSet::new()));
    let checker = tokio::spawn({
        let (witness, stop, ran_twice) = (witness.clone(), stop.clone(), ran_twice.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for (token, marks) in witness.marks() {
                    if marks.starts > 1 {
                        ran_twice.lock().unwrap().insert(token);
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });

    let started = Instant::now();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let restarts = AtomicUsize::new(0);
    // When each kill -9 came (Unix ms, taken just before it).
    let mut kills: Vec<i64> = Vec::new();
    let mut round = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(1500 + (round as u64 % 3) * 500)).await;
        let fault = FAULTS[round % FAULTS.len()];
        let victim = (round + round / FAULTS.len()) % REPLICAS;
        *faults.entry(format!("{fault:?}")).or_default() += 1;
        match fault {
            Fault::KillReplica => {
                let server = fleet.lock().unwrap()[victim].take().unwrap();
                kills.push(now_unix_ms());
                let mut restarted = server.restart().await;
                restarted.token = token.clone();
                fleet.lock().unwrap()[victim] = Some(restarted);
                restarts.fetch_add(1, Ordering::Relaxed);
            }
            Fault::RestartDatabase => {
                let db = pg.clone();
                tokio::task::spawn_blocking(move || db.stop()).await.unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
                let db = pg.clone();
                tokio::task::spawn_blocking(move || db.resume()).await.unwrap();
            }
            Fault::CutDatabaseLink { seconds } => {
                network.database_link_up(victim, false);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                network.database_link_up(victim, true);
            }
            Fault::CutClientLink => {
                network.client_link_up(victim, false);
                tokio::time::sleep(Duration::from_secs(3)).await;
                network.client_link_up(victim, true);
            }
            Fault::FlapDatabaseLink => {
                for down in [0.4, 0.8, 0.3, 2.0, 0.5] {
                    network.database_link_up(victim, false);
                    tokio::time::sleep(Duration::from_secs_f64(down)).await;
                    network.database_link_up(victim, true);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
            }
            Fault::FillDisk => {
                let filler = fleet.lock().unwrap()[victim].as_ref().unwrap().small_disk().fill();
                tokio::time::sleep(Duration::from_secs(3)).await;
                std::fs::remove_file(filler).unwrap();
            }
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    submitter.await.unwrap();
    reader.await.unwrap();
    checker.await.unwrap();
    let rss_at_end: Vec<u64> = fleet.lock().unwrap().iter().flatten().map(Server::rss_kib).collect();

    // Every accepted command reaches a final state, and what it says agrees with the witness.
    let mut tally = std::mem::take(&mut *tally.lock().unwrap());
    let reader = fleet.lock().unwrap()[0].take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut never_final, mut misreported) = (Vec::new(), Vec::new());
    let mut killed_after_last_mark: Vec<i64> = Vec::new();
    // Read once every command is final (nothing appends after that): an hour's witness is long.
    let mut finals = Vec::with_capacity(tally.accepted.len());
    for (command_token, path) in &tally.accepted {
        let properties = loop {
            let r = reader.get(path).await;
            if r.status == 200 {
                break Some(r.json()["properties"].clone());
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        finals.push((command_token, path, properties));
    }
    let mut seen = witness.marks();
    for (command_token, path, properties) in finals {
        // A replica that saw a command to its end while cut off reports it once it can.
        let properties = match properties {
            Some(p) if p["reason"] == "WorkerLost" && seen.get(command_token).is_some_and(|m| m.ends == 1) => {
                let mut latest = p;
                while latest["reason"] == "WorkerLost" && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // Only a result counts: an answer of a replica that is busy (503) is asked again.
                    let r = reader.get(path).await;
                    if r.status == 200 {
                        latest = r.json()["properties"].clone();
                    }
                }
                Some(latest)
            }
            other => other,
        };
        let Some(properties) = properties else {
            never_final.push(command_token.clone());
            continue;
        };
        let marks = seen.get(command_token).cloned().unwrap_or_default();
        let (state, reason) =
            (properties["provisioningState"].as_str().unwrap(), properties["reason"].as_str().unwrap_or(""));
        let kind = reason.split(':').next().unwrap();
        *outcomes.entry(format!("{state} {kind}").trim().to_string()).or_default() += 1;
        // A command the store says was stopped did not run to its end, nor on after it was said.
        let ended = properties["finishedAt"].as_str().and_then(unix_millis).unwrap_or(i64::MIN);
        let stopped_in_time = marks.ends == 0 && (marks.starts == 0 || marks.last_ms < ended);
        // Its last mark written, its replica killed before the exit could be seen.
        let kill_after_last_mark = kills
            .iter()
            .map(|&kill| kill - marks.last_ms)
            .find(|gap| (-KILL_CLOCK_SLACK_MS..=EXIT_SEEN_WITHIN_MS).contains(gap));
        let killed_before_its_exit = (marks.starts, marks.ends) == (1, 1) && kill_after_last_mark.is_some();
        if kind == "Interrupted" && killed_before_its_exit {
            killed_after_last_mark.extend(kill_after_last_mark);
        }
        let agrees = match (state, kind) {
            ("Succeeded", _) => (marks.starts, marks.ends) == (1, 1),
            ("Failed", "WorkerLost") if reason.contains(':') => (marks.starts, marks.ends) == (1, 1),
            ("Failed", "Interrupted") => stopped_in_time || killed_before_its_exit,
            ("Failed", "WorkerLost" | "ServerShutdown" | "DataDirectoryFull") => stopped_in_time,
            _ => false,
        };
        if !agrees {
            misreported.push(format!("{command_token}: {state} {reason:?}, witness {marks:?}"));
        }
    }
    let ran_twice = ran_twice.lock().unwrap().clone();
    seen = witness.marks();
    for (token, marks) in seen {
        if marks.starts > 1 {
            tally.violations.push(format!("{token} ran {} times", marks.starts));
        }
    }

    let report = render(&Report {
        seconds,
        rounds: round,
        faults: &faults,
        tally: &tally,
        outcomes: &outcomes,
        ran_twice: ran_twice.len(),
        never_final: never_final.len(),
        misreported: misreported.len(),
        killed_after_last_mark: &killed_after_last_mark,
        rss: rss_at_start.iter().zip(&rss_at_end).map(|(a, b)| (*a, *b)).collect(),
        restarts: restarts.load(Ordering::Relaxed),
    });
    eprintln!("{report}");
    if let Ok(path) = std::env::var("KUBEINVOKE_CHAOS_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    assert!(ran_twice.is_empty(), "commands ran more than once: {ran_twice:?}");
    assert!(never_final.is_empty(), "commands never became final: {never_final:?}");
    assert!(misreported.is_empty(), "results that disagree with the witness: {misreported:?}");
    assert!(tally.violations.is_empty(), "answers that break the rules: {:?}", tally.violations);
    let succeeded = outcomes.get("Succeeded").copied().unwrap_or_default();
    assert!(succeeded * 2 > tally.accepted.len(), "most commands ran to the end: {outcomes:?}");
}

struct Report<'a> {
    seconds: u64,
    rounds: usize,
    faults: &'a BTreeMap<String, usize>,
    tally: &'a Tally,
    outcomes: &'a BTreeMap<String, usize>,
    ran_twice: usize,
    never_final: usize,
    misreported: usize,
    /// `Interrupted` after their last mark: killed with their replica before their exit was seen.
    /// (each one's kill, in ms after its last mark)
    killed_after_last_mark: &'a [i64],
    /// Each replica's RSS (KiB) at the start and the end (its newest process).
    rss: Vec<(u64, u64)>,
    restarts: usize,
}

/// The run as a Markdown table.
fn render(r: &Report) -> String {
    let mut rows = vec![
        ("duration".to_string(), format!("{} s, {} fault rounds", r.seconds, r.rounds)),
        ("accepted".to_string(), r.tally.accepted.len().to_string()),
        ("result reads".to_string(), r.tally.reads.to_string()),
    ];
    rows.extend(r.faults.iter().map(|(fault, n)| (format!("fault: {fault}"), n.to_string())));
    rows.extend(r.outcomes.iter().map(|(outcome, n)| (format!("ended {outcome}"), n.to_string())));
    rows.push(("ran twice".into(), r.ran_twice.to_string()));
    rows.push(("never final".into(), r.never_final.to_string()));
    rows.push(("result disagrees with the witness".into(), r.misreported.to_string()));
    rows.push((
        format!("Interrupted after the last mark, replica killed within {EXIT_SEEN_WITHIN_MS} ms of it"),
        match r.killed_after_last_mark {
            [] => "0".to_string(),
            gaps => format!(
                "{} (killed {} ms after it)",
                gaps.len(),
                gaps.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
        },
    ));
    rows.extend(r.tally.answers.iter().map(|(kind, n)| (format!("answer: {kind}"), n.to_string())));
    rows.push(("answers breaking the rules".into(), r.tally.violations.len().to_string()));
    for (k, (start, end)) in r.rss.iter().enumerate() {
        rows.push((
            format!("replica {k} RSS"),
            format!("{:.1} MiB → {:.1} MiB", *start as f64 / 1024.0, *end as f64 / 1024.0),
        ));
    }
    rows.push(("replica restarts (kill -9)".into(), r.restarts.to_string()));
    let mut table = String::from("| chaos | |\n|---|---|\n");
    for (what, value) in rows {
        table.push_str(&format!("| {what} | {value} |\n"));
    }
    table
}

/// The witness's marks and the kills are both read off this machine's clock; the kill's time is
/// taken just before it, so it may precede the moment the replica died by this much.
const KILL_CLOCK_SLACK_MS: i64 = 20;

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `2026-12-02T14:41:45.24Z` as Unix milliseconds (the UTC form results use).
fn unix_millis(rfc3339: &str) -> Option<i64> {
    let (date, time) = rfc3339.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + millis)
}

#[test]
fn result_times_read_as_unix_millis() {
    assert_eq!(unix_millis("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
    assert_eq!(unix_millis("2023-11-14T22:13:20.1Z"), Some(1_700_000_000_100));
    assert_eq!(unix_millis("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(unix_millis("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
}
