//! Network partitions, for real: the database and each replica on a test host of its own (a
//! network namespace, `kubeinvoke_testkit::network`), a link cut while commands run. An outside
//! witness (a file each command appends timed marks to) decides what ran: no command twice, every
//! `Succeeded` one exactly once, and none still running once the store calls it lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::path_of;
use kubeinvoke_testkit::network::TestNetwork;
use kubeinvoke_testkit::private_postgres::PrivatePostgres;
use kubeinvoke_testkit::witness::{FileWitness, Marks};

const PASSWORD: &str = "partition-secret";
/// Renewed every second; the fence goes up after 3 s without a renewal.
const LEASE: &str = "4s";

/// Replica `k` on its host, sharing `url`; the first one's admin token when given.
async fn replica(network: &TestNetwork, k: usize, url: &str, token: Option<&str>) -> Server {
    let args =
        ["--store", url, "--sandbox", "none", "--lease", LEASE, "--max-running", "8", "--queue-capacity", "1000"];
    let mut server = Server::start_on_host(&args, &network.replica(k)).await;
    if let Some(token) = token {
        server.token = token.to_string();
    }
    server
}

/// The id at the end of a result path (`…/commandResults/{id}?api-version=…`).
fn command_id(path: &str) -> String {
    path.split('?').next().unwrap().rsplit('/').next().unwrap().to_string()
}

/// When the store ended a command (Unix milliseconds), read from the database itself.
async fn finished_at(reader: &Server, path: &str) -> i64 {
    reader.count(&format!("SELECT finished_at FROM commands WHERE id = '{}'", command_id(path))).await
}

/// A submission to `server`, answered within `within` or `None` (unreachable, or no answer).
async fn try_submit(server: &Server, command: &str, within: Duration) -> Option<Reply> {
    let path = format!("{}/runCommand", cluster_path("rg", "c1"));
    let request = server.request(Method::POST, &path, Some(json!({"command": command}))).timeout(within);
    let response = request.send().await.ok()?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.ok()?;
    Some(Reply { status, headers, text })
}

/// Polls `path` at `reader` until final; its properties.
async fn final_properties(reader: &Server, path: &str) -> Value {
    reader.wait(path).await["properties"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_its_commands_before_they_are_called_lost() {
    let Some(network) = TestNetwork::create_if_possible(2) else {
        return;
    };
    let pg = PrivatePostgres::start_on_host(&network, PASSWORD);
    let url = pg.create_database("shared").await;
    let witness = FileWitness::create();
    let gate = witness.path.with_file_name("gate");

    // The victim starts alone, so what it is given is surely its own.
    let victim = replica(&network, 0, &url, None).await;
    victim.create_cluster("rg", "c1", json!({})).await;
    let mut long = Vec::new();
    for i in 0..3 {
        let token = format!("long-{i}");
        let command = witness.command(&token, 30.0);
        long.push((token, path_of(&victim.submit("rg", "c1", json!({"command": command})).await)));
    }
    // These end just after the cut, while the victim cannot store their results.
    let mut gated = Vec::new();
    for i in 0..2 {
        let token = format!("gated-{i}");
        let command = format!(
            "while [ ! -e {} ]; do sleep 0.05; done; {}; echo done-{token}",
            gate.display(),
            witness.command(&token, 0.4)
        );
        gated.push((token, path_of(&victim.submit("rg", "c1", json!({"command": command})).await)));
    }
    for (_, path) in long.iter().chain(&gated) {
        victim.wait_for_state(path, "Running").await;
    }
    let survivor = replica(&network, 1, &url, Some(&victim.token)).await;

    network.database_link_up(0, false);
    let cut = Instant::now();
    std::fs::write(&gate, "").unwrap();

    // Meanwhile the victim refuses new work with a 503 that says why, promptly: never a 202 it
    // could not keep, never a hang.
    let asked = Instant::now();
    let refused = try_submit(&victim, "echo never", Duration::from_secs(20)).await.expect("the victim answers");
    let message = refused.assert_error(503, "ServiceUnavailable");
    assert!(message.contains("database"), "{message}");
    assert!(refused.header("retry-after").is_some(), "a 503 says when to retry");
    assert!(asked.elapsed() < Duration::from_secs(10), "the 503 took {:?}", asked.elapsed());
    let ready = reply(victim.client.get(format!("{}/readyz", victim.base)).timeout(Duration::from_secs(20))).await;
    assert_eq!(ready.status, 503, "{}", ready.text);

    // The survivor calls all five lost once their lease ran out.
    let mut ended = HashMap::new();
    for (token, path) in long.iter().chain(&gated) {
        let properties = final_properties(&survivor, path).await;
        assert_eq!(properties["provisioningState"], "Failed", "{token}: {properties}");
        assert_eq!(properties["reason"], "WorkerLost", "{token}: {properties}");
        ended.insert(token.clone(), finished_at(&survivor, path).await);
    }
    eprintln!("partition: the survivor called the victim's commands lost {:?} after the cut", cut.elapsed());
    let seen = witness.marks();
    for (token, _) in &long {
        let marks = &seen[token];
        assert_eq!((marks.starts, marks.ends), (1, 0), "{token} ran once and was stopped: {marks:?}");
        assert!(
            marks.last_ms < ended[token],
            "{token} still ran when it was called lost: {marks:?} vs {}",
            ended[token]
        );
    }
    for (token, _) in &gated {
        let marks = &seen[token];
        assert_eq!((marks.starts, marks.ends), (1, 1), "{token} ran to its end: {marks:?}");
    }
    // And none runs on: the witness hears nothing more of them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = witness.marks();
    for (token, _) in &long {
        assert_eq!(later[token].last_ms, seen[token].last_ms, "{token} still runs on the victim");
    }

    // The link heals: the victim takes work again by itself.
    network.database_link_up(0, true);
    let healed = Instant::now();
    let accepted = loop {
        match try_submit(&victim, &witness.command("after", 0.2), Duration::from_secs(20)).await {
            Some(r) if r.status == 202 => break r.header("location").unwrap().to_string(),
            Some(r) => assert_eq!(r.status, 503, "{}", r.text),
            None => panic!("the victim did not answer after the link healed"),
        }
        assert!(healed.elapsed() < Duration::from_secs(30), "the victim never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("partition: the victim took work again {:?} after the link healed", healed.elapsed());
    assert_eq!(final_properties(&victim, &path_of(&accepted)).await["provisioningState"], "Succeeded");

    // What the database ended stays ended; what the victim saw run to its end is added to it.
    for (token, path) in &gated {
        let deadline = Instant::now() + Duration::from_secs(40);
        let properties = loop {
            let properties = final_properties(&survivor, path).await;
            if properties["reason"] != "WorkerLost" {
                break properties;
            }
            assert!(Instant::now() < deadline, "{token}: the victim never reported its end: {properties}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(properties["provisioningState"], "Failed", "{token}");
        let reason = properties["reason"].as_str().unwrap();
        assert!(reason.starts_with("WorkerLost: ") && reason.contains("exit code 0"), "{token}: {reason}");
        assert_eq!(properties["logs"], format!("done-{token}\n"));
    }
    for (token, path) in &long {
        let properties = final_properties(&victim, path).await;
        assert_eq!(
            (properties["provisioningState"].as_str(), properties["reason"].as_str()),
            (Some("Failed"), Some("WorkerLost")),
            "{token}"
        );
    }
    let twice: Vec<(String, Marks)> = witness.marks().into_iter().filter(|(_, m)| m.starts > 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_clients_only_keeps_its_commands() {
    let Some(network) = TestNetwork::create_if_possible(2) else {
        return;
    };
    let pg = PrivatePostgres::start_on_host(&network, PASSWORD);
    let url = pg.create_database("shared").await;
    let witness = FileWitness::create();
    let isolated = replica(&network, 0, &url, None).await;
    isolated.create_cluster("rg", "c1", json!({})).await;
    let mut commands = Vec::new();
    for i in 0..3 {
        let token = format!("kept-{i}");
        let command = witness.command(&token, 10.0);
        commands.push((token, path_of(&isolated.submit("rg", "c1", json!({"command": command})).await)));
    }
    for (_, path) in &commands {
        isolated.wait_for_state(path, "Running").await;
    }
    let other = replica(&network, 1, &url, Some(&isolated.token)).await;

    network.client_link_up(0, false);
    let cut = Instant::now();
    // Longer than a lease: the isolated replica keeps renewing, so nobody calls anything lost.
    while cut.elapsed() < Duration::from_secs(7) {
        assert!(
            try_submit(&isolated, "true", Duration::from_secs(1)).await.is_none(),
            "the test's premise: its clients cannot reach it"
        );
        for (token, path) in &commands {
            let r = other.get(path).await;
            assert_eq!(
                (r.status.as_u16(), r.json()["properties"]["provisioningState"].as_str()),
                (202, Some("Running")),
                "{token}: {}",
                r.text
            );
        }
    }
    network.client_link_up(0, true);
    for (token, path) in &commands {
        let properties = final_properties(&isolated, path).await;
        assert_eq!(properties["provisioningState"], "Succeeded", "{token}: {properties}");
        let marks = &witness.marks()[token];
        assert_eq!((marks.starts, marks.ends), (1, 1), "{token}: {marks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_never_runs_a_command_twice_nor_past_its_lease() {
    let Some(network) = TestNetwork::create_if_possible(3) else {
        return;
    };
    let pg = PrivatePostgres::start_on_host(&network, PASSWORD);
    let url = pg.create_database("shared").await;
    let witness = FileWitness::create();
    let first = replica(&network, 0, &url, None).await;
    first.create_cluster("rg", "c1", json!({})).await;
    let token = first.token.clone();
    let fleet = [first, replica(&network, 1, &url, Some(&token)).await, replica(&network, 2, &url, Some(&token)).await];

    // Replica 0's database link: down for less than the fence's 3 s, and for more, in turn.
    let flaps = [(0.5, 1.0), (3.5, 1.5), (1.0, 0.5), (5.0, 2.0), (0.3, 0.3), (2.0, 1.0), (4.0, 1.0)];
    let flapping = {
        let network = &network;
        async move {
            for (down, up) in flaps {
                network.database_link_up(0, false);
                tokio::time::sleep(Duration::from_secs_f64(down)).await;
                network.database_link_up(0, true);
                tokio::time::sleep(Duration::from_secs_f64(up)).await;
            }
        }
    };
    let submitting = async {
        let (mut accepted, mut unavailable, mut violations) = (Vec::new(), 0, Vec::new());
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < Duration::from_secs(24) {
            n += 1;
            let token = format!("flap-{n}");
            let seconds = 0.2 + (n % 12) as f64 * 0.2;
            match try_submit(&fleet[n % 3], &witness.command(&token, seconds), Duration::from_secs(20)).await {
                Some(r) if r.status == 202 => accepted.push((token, path_of(r.header("location").unwrap()))),
                Some(r) if r.status == 503 && r.header("retry-after").is_some() => unavailable += 1,
                Some(r) => violations.push(format!("{token}: {} {}", r.status, r.text)),
                None => violations.push(format!("{token}: no answer within 20 s")),
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        (accepted, unavailable, violations)
    };
    let ((accepted, unavailable, violations), ()) = tokio::join!(submitting, flapping);
    network.database_link_up(0, true);
    assert!(violations.is_empty(), "answers other than 202 or 503 with Retry-After: {violations:?}");

    let reader = &fleet[1];
    let mut by_outcome: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (token, path) in &accepted {
        let properties = loop {
            let properties = final_properties(reader, path).await;
            // A replica that saw a command to its end while cut off reports it once it can.
            let unreported =
                properties["reason"] == "WorkerLost" && witness.marks().get(token).is_some_and(|m| m.ends == 1);
            if !unreported || Instant::now() > deadline {
                break properties;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let marks = witness.marks().get(token).cloned().unwrap_or_default();
        let (state, reason) =
            (properties["provisioningState"].as_str().unwrap(), properties["reason"].as_str().unwrap_or(""));
        assert!(marks.starts <= 1, "{token} ran {} times", marks.starts);
        match state {
            "Succeeded" => assert_eq!((marks.starts, marks.ends), (1, 1), "{token} succeeded: {marks:?}"),
            "Failed" if reason == "WorkerLost" => {
                assert_eq!(marks.ends, 0, "{token} ran to its end, and its result never said so: {marks:?}");
                if marks.starts == 1 {
                    let ended = finished_at(reader, path).await;
                    assert!(marks.last_ms < ended, "{token} still ran when it was called lost: {marks:?} vs {ended}");
                }
            }
            "Failed" if reason.starts_with("WorkerLost: ") => {
                assert_eq!((marks.starts, marks.ends), (1, 1), "{token} reported as run to its end: {marks:?}");
            }
            other => panic!("{token} ended {other} {reason}: {properties}"),
        }
        *by_outcome.entry(format!("{state} {}", reason.split(':').next().unwrap())).or_default() += 1;
    }
    let succeeded = by_outcome.get("Succeeded ").copied().unwrap_or_default();
    assert!(succeeded * 2 > accepted.len(), "most commands ran to the end: {by_outcome:?}");
    eprintln!("flapping: {} accepted ({by_outcome:?}), {unavailable} answered 503", accepted.len());
}
