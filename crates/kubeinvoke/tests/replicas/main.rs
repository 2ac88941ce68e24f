//! Several `kubeinvoke serve` replicas on loopback ports sharing one real PostgreSQL database:
//! any replica answers any request, every command runs exactly once, a dead replica's command
//! ends `WorkerLost`, and a database outage gives 503s and heals by itself.
//!
//! Each test gets a private PostgreSQL server (`kubeinvoke_testkit::private_postgres`), so stopping it disturbs
//! nothing else.

mod chaos;
mod partitions;

use kubeinvoke_testkit::harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::*;
use kubeinvoke_testkit::private_postgres::PrivatePostgres;

/// Starts `n` replicas on `url`; the first one bootstraps the admin, whose token all use.
async fn replicas(url: &str, n: usize, extra: &[&str]) -> Vec<Server> {
    let mut args = vec!["--store", url];
    args.extend_from_slice(extra);
    let first = Server::start(&args).await;
    assert!(!first.token.is_empty(), "the first replica bootstraps the admin");
    let mut all = vec![first];
    for _ in 1..n {
        let mut replica = Server::start(&args).await;
        assert!(replica.admin().is_none(), "only the first replica writes bootstrap-admin.json");
        replica.token = all[0].token.clone();
        all.push(replica);
    }
    all
}

/// The path of a `Location` URL, to ask any replica about it.
fn path_of(location: &str) -> String {
    format!("/{}", location.splitn(4, '/').nth(3).unwrap())
}

#[tokio::test]
async fn any_replica_answers_for_any_command_with_one_token() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let r = replicas(&url, 3, &[]).await;
    r[0].create_cluster("rg", "c1", json!({})).await;

    // A token the first replica issued is valid at the others: one signing key for all.
    for replica in &r[1..] {
        assert_eq!(replica.get(&cluster_path("rg", "c1")).await.status, 200);
    }
    let ids: Vec<Value> =
        futures_util::future::join_all(r.iter().map(|s| async { s.get("/subscriptions").await.json() })).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "replicas report one subscription: {ids:?}");

    let location = r[0].submit("rg", "c1", json!({"command": "echo started; sleep 2; echo done"})).await;
    let path = path_of(&location);
    for replica in &r {
        let running = replica.wait_for_state(&path, "Running").await;
        assert_eq!(running.status, 202);
    }
    for replica in &r {
        let finished = replica.wait(&path).await;
        assert_eq!(finished["properties"]["provisioningState"], "Succeeded");
        assert_eq!(finished["properties"]["logs"], "started\ndone\n");
    }
    // The live-log endpoint of a replica that did not run it serves the stored output.
    for replica in &r {
        let resource = path.split('?').next().unwrap();
        let logs = replica.get(&format!("{resource}/logs?api-version={API}")).await;
        assert_eq!((logs.status.as_u16(), logs.text.as_str()), (200, "started\ndone\n"));
    }
}

#[tokio::test]
async fn three_hundred_commands_spread_over_three_replicas_each_run_exactly_once() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    // The side effect the test counts: each run creates one new file in a directory every
    // command can write to. `--sandbox none`, so commands see it; claims do not depend on it.
    let runs = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(runs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = runs.path().display().to_string();
    let r = replicas(&url, 3, &["--sandbox", "none", "--queue-capacity", "1000", "--max-running", "4"]).await;
    r[0].create_cluster("rg", "c1", json!({})).await;

    let mut locations = Vec::new();
    for batch in (0..300).collect::<Vec<_>>().chunks(30) {
        let submitted = futures_util::future::join_all(batch.iter().map(|&i| {
            let replica = &r[i % 3];
            let command = format!("mktemp {dir}/run-{i}.XXXXXX > /dev/null && echo {i}");
            async move { (i, replica.submit("rg", "c1", json!({"command": command})).await) }
        }))
        .await;
        locations.extend(submitted);
    }
    for (i, location) in &locations {
        // Read through a different replica than the one that took the submission.
        let result = r[(i + 1) % 3].wait(&path_of(location)).await;
        assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
        assert_eq!(result["properties"]["logs"], format!("{i}\n"));
    }
    let mut executions: HashMap<usize, usize> = HashMap::new();
    for entry in std::fs::read_dir(runs.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let index: usize = name.strip_prefix("run-").unwrap().split('.').next().unwrap().parse().unwrap();
        *executions.entry(index).or_default() += 1;
    }
    let twice: Vec<_> = executions.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "commands run more than once: {twice:?}");
    assert_eq!(executions.len(), 300, "every command ran");

    // The work was shared: every replica ran some of it.
    let owners = r[0].count("SELECT COUNT(DISTINCT owner) FROM commands").await;
    assert_eq!(owners, 3, "each replica claimed commands");
}

#[tokio::test]
async fn a_killed_replicas_command_ends_worker_lost_and_the_survivors_carry_on() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let lease = ["--lease", "2s", "--max-running", "1"];
    // The doomed replica starts alone, so the long command is surely its own.
    let mut doomed = replicas(&url, 1, &lease).await.remove(0);
    doomed.create_cluster("rg", "c1", json!({})).await;
    let long = path_of(&doomed.submit("rg", "c1", json!({"command": "sleep 120"})).await);
    doomed.wait_for_state(&long, "Running").await;
    // Queued behind it (max-running 1) until the survivors start.
    let queued: Vec<String> = futures_util::future::join_all(
        (0..3).map(|i| doomed.submit("rg", "c1", json!({"command": format!("echo queued-{i}")}))),
    )
    .await
    .iter()
    .map(|l| path_of(l))
    .collect();

    let mut survivors = Vec::new();
    for _ in 0..2 {
        let mut s = Server::start(&["--store", &url, "--lease", "2s"]).await;
        s.token = doomed.token.clone();
        survivors.push(s);
    }
    doomed.kill9();
    let killed_at = Instant::now();

    // Clients of the survivors see no error while the lease runs out.
    let lost = loop {
        for s in &survivors {
            for path in queued.iter().chain([&long]) {
                let r = s.get(path).await;
                assert!(r.status == 200 || r.status == 202, "{}: {}", r.status, r.text);
            }
        }
        let r = survivors[0].get(&long).await;
        if r.status == 200 {
            break r.json();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(20), "never declared lost: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let detected = killed_at.elapsed();
    assert_eq!(lost["properties"]["provisioningState"], "Failed");
    assert_eq!(lost["properties"]["reason"], "WorkerLost");
    // Lease 2 s, renewed and checked every 0.5 s: detected after the lease, well within 2 leases.
    assert!(detected < Duration::from_secs(5), "lost after {detected:?}");
    eprintln!("lease-expiry detection: {detected:?} after kill -9 (lease 2s)");

    for (i, path) in queued.iter().enumerate() {
        let result = survivors[i % 2].wait(path).await;
        assert_eq!(result["properties"]["provisioningState"], "Succeeded");
        assert_eq!(result["properties"]["logs"], format!("queued-{i}\n"));
    }
    // A lost command is never re-run: still the same result a few leases later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(survivors[1].get(&long).await.json(), lost);
}

#[tokio::test]
async fn a_database_outage_gives_503s_and_the_replicas_recover_by_themselves() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let r = replicas(&url, 2, &[]).await;
    r[0].create_cluster("rg", "c1", json!({})).await;
    let before = r[1].submit("rg", "c1", json!({"command": "echo before"})).await;
    assert_eq!(r[0].wait(&path_of(&before)).await["properties"]["logs"], "before\n");

    pg.stop();
    // What a replica read within the last second may still be served from its cache.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for replica in &r {
        for path in [cluster_path("rg", "c1"), path_of(&before)] {
            let started = Instant::now();
            let reply = replica.get(&path).await;
            let message = reply.assert_error(503, "ServiceUnavailable");
            assert!(message.contains("database"), "{message}");
            assert!(reply.header("retry-after").is_some());
            assert!(started.elapsed() < Duration::from_secs(10), "a 503 must not hang: {:?}", started.elapsed());
        }
        let ready = reply(replica.client.get(format!("{}/readyz", replica.base))).await;
        assert_eq!(ready.status, 503, "{}", ready.text);
        let submitted =
            replica.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "true"})).await;
        submitted.assert_error(503, "ServiceUnavailable");
    }

    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    for replica in &r {
        loop {
            let reply = replica.get(&cluster_path("rg", "c1")).await;
            if reply.status == 200 {
                break;
            }
            assert_eq!(reply.status, 503, "{}", reply.text);
            assert!(Instant::now() < deadline, "never recovered: {}", reply.text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Nothing was lost, and new work runs (the work notifications reconnected too).
    assert_eq!(r[1].get(&path_of(&before)).await.json()["properties"]["logs"], "before\n");
    let after = r[0].submit("rg", "c1", json!({"command": "echo after"})).await;
    assert_eq!(r[1].wait(&path_of(&after)).await["properties"]["logs"], "after\n");
}

#[tokio::test]
async fn a_cancel_sent_to_another_replica_stops_the_command_where_it_runs() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let args = ["--store", url.as_str(), "--lease", "2s"];
    // The owner starts alone, so the command is surely its own.
    let owner = Server::start(&args).await;
    owner.create_cluster("rg", "c1", json!({})).await;
    let path = path_of(&owner.submit("rg", "c1", json!({"command": "echo started; sleep 120"})).await);
    owner.wait_for_state(&path, "Running").await;
    let mut other = Server::start(&args).await;
    other.token = owner.token.clone();

    let resource = path.split('?').next().unwrap();
    let asked = Instant::now();
    let r = other.post(&format!("{resource}/cancel"), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = other.wait(&path).await;
    assert_eq!(result["properties"]["provisioningState"], "Canceled", "{result}");
    assert!(result["properties"]["reason"].as_str().unwrap().starts_with("Canceled by "), "{result}");
    // Carried out at the owner's next lease renewal (every lease/4).
    assert!(asked.elapsed() < Duration::from_secs(5), "took {:?}", asked.elapsed());
    other.post(&format!("{resource}/cancel"), json!({})).await.assert_error(409, "CommandAlreadyFinished");
}

#[tokio::test]
async fn a_fan_out_run_is_shared_by_replicas_and_outlives_the_replica_driving_it() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let mut r = replicas(&url, 2, &["--lease", "2s"]).await;
    let witness = Witness::start();
    for i in 0..8 {
        r[0].create_group("fleet").await;
        let body = json!({"location": "westeurope", "tags": {"env": "prod"}, "properties": {}});
        assert!(r[0].put(&cluster_path("fleet", &format!("c{i}")), body).await.status.is_success());
    }
    let runs = format!("/subscriptions/{SUB}/resourceGroups/fleet/providers/Microsoft.ContainerService");
    let body = json!({"command": witness.command(1.0), "targets": {"tags": {"env": "prod"}}, "maxConcurrency": 2});
    let submitted = r[0].post(&format!("{runs}/runCommand"), body).await;
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let path = path_of(submitted.header("location").unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while witness.count("start") < 2 {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other replica reads the run while the first drives it.
    let seen = r[1].get(&path).await;
    assert_eq!(seen.status, 202, "{}", seen.text);

    // The driver dies; once its lease runs out the survivor drives the run to its end.
    r[0].kill9();
    let survivor = r.remove(1);
    let finish_by = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let reply = survivor.get(&path).await;
        if reply.status == 200 {
            break reply.json();
        }
        assert_eq!(reply.status, 202, "{}", reply.text);
        assert!(Instant::now() < finish_by, "the run never finished: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let targets = run["properties"]["targets"].as_array().unwrap();
    let mut succeeded = 0;
    for target in targets {
        let cluster = target["clusterId"].as_str().unwrap().rsplit('/').next().unwrap();
        let history = survivor.get(&format!("{}/commandResults", cluster_path("fleet", cluster))).await.json();
        assert_eq!(history["value"].as_array().unwrap().len(), 1, "one command per target: {history}");
        match target["state"].as_str().unwrap() {
            "Succeeded" => succeeded += 1,
            // What ran on the dead replica is never re-run: it ends WorkerLost.
            "Failed" => assert_eq!(target["reason"], "WorkerLost", "{target}"),
            other => panic!("target ended {other}: {target}"),
        }
    }
    assert_eq!(witness.count("start"), 8, "every target started exactly once: {:?}", witness.events.lock().unwrap());
    assert_eq!(witness.count("end"), succeeded);
    assert!(succeeded >= 6, "{run}");
    assert!(survivor.server_log().contains("fan-out run finished"), "the survivor drove the run to its end");
}

#[tokio::test]
async fn approvals_given_at_different_replicas_at_once_release_a_held_command_exactly_once() {
    let Some(pg) = PrivatePostgres::start_if_possible() else {
        return;
    };
    let url = pg.create_database("shared").await;
    let mut r = replicas(&url, 2, &["--lease", "2s"]).await;
    let policy = json!({"commandApproval": {"mode": "always", "approvers": 2, "expiresAfter": "PT10M"}});
    r[0].create_cluster("rg", "c1", policy).await;
    let scope = cluster_path("rg", "c1");
    let owners = [
        r[0].create_principal("first", Some(("Owner", &scope))),
        r[0].create_principal("second", Some(("Owner", &scope))),
    ];
    let mut tokens = Vec::new();
    for owner in &owners {
        tokens.push(r[0].token_for(owner, "https://management.azure.com/.default").await);
    }
    for round in 0..5 {
        let location = r[0].submit("rg", "c1", json!({"command": format!("echo round-{round}")})).await;
        let result = path_of(&location).split('?').next().unwrap().to_string();
        let approve = format!("{result}/approve?api-version={API}");
        let body = json!({"reason": "ok"});
        // Both approvals at once, each on another replica: one counts first, the other releases.
        let (a, b) = tokio::join!(
            send_as(&r[0], &tokens[0], reqwest::Method::POST, &approve, Some(body.clone())),
            send_as(&r[1], &tokens[1], reqwest::Method::POST, &approve, Some(body.clone())),
        );
        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200), "{} {}", a.text, b.text);
        let finished = r[1].wait(&path_of(&location)).await;
        assert_eq!(finished["properties"]["logs"], format!("round-{round}\n"), "{finished}");
    }
    // Every command ran once.
    assert_eq!(r[0].count("SELECT COUNT(*) FROM commands WHERE state = 'Succeeded'").await, 5);

    // Whichever replica is alive ends what nobody approved in time.
    let patch = json!({"location": "westeurope", "properties": {"commandApproval": {"mode": "always", "approvers": 2, "expiresAfter": "PT1S"}}});
    assert_eq!(r[0].put(&scope, patch).await.status, 200);
    let location = r[0].submit("rg", "c1", json!({"command": "echo never"})).await;
    r[0].kill9();
    let ended = r[1].wait(&path_of(&location)).await;
    assert_eq!(ended["properties"]["provisioningState"], "Failed", "{ended}");
    assert!(ended["properties"]["reason"].as_str().unwrap().starts_with("ApprovalExpired"), "{ended}");
    drop(r);
}
