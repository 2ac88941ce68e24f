//! runCommand and commandResults: the polling contract (docs/contract.md §3, §4, §5) and real execution.

use serde_json::json;

use crate::harness::*;

fn is_command_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[tokio::test]
async fn run_command_answers_202_with_an_absolute_location() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let r =
        s.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "true", "context": ""})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.text, "", "202 from runCommand has an empty body");
    assert!(r.header("azure-asyncoperation").is_none(), "never Azure-AsyncOperation");
    assert!(r.header("retry-after").unwrap().parse::<u64>().is_ok());
    let location = r.header("location").unwrap();
    let prefix = format!("{}{}/commandResults/", s.base, cluster_path("rg", "c1"));
    assert!(location.starts_with(&prefix) && location.starts_with("https://"), "{location}");
    let rest = &location[prefix.len()..];
    let (id, query) = rest.split_once('?').expect("id followed by ?");
    assert!(is_command_id(id), "{id}");
    assert_eq!(query, "api-version=2024-09-01");

    let other = s.url(&format!("{}/runCommand?api-version=2026-06-01", cluster_path("rg", "c1")));
    let r = reply(s.client.post(other).bearer_auth(&s.token).json(&json!({"command": "true"}))).await;
    assert!(r.header("location").unwrap().ends_with("?api-version=2026-06-01"), "same api-version as the request");
}

#[tokio::test]
async fn result_is_202_with_a_body_while_running_then_200() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo started; sleep 2; echo done", "context": ""})).await;
    let running = s.wait_for_state(&location, "Running").await;
    assert_eq!(running.header("location"), Some(location.as_str()));
    assert!(running.header("retry-after").is_some());
    let body = running.json();
    let id = location.split("/commandResults/").nth(1).unwrap().split('?').next().unwrap();
    assert_eq!(body["id"], id);
    assert!(body["properties"]["startedAt"].is_string());
    assert!(body["properties"].get("logs").is_none() && body["properties"].get("exitCode").is_none());

    let done = s.wait(&location).await;
    let p = &done["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(p["exitCode"], 0);
    assert_eq!(p["logs"], "started\ndone\n");
    let started =
        time::OffsetDateTime::parse(p["startedAt"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    let finished =
        time::OffsetDateTime::parse(p["finishedAt"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(finished - started >= time::Duration::seconds(2));
    // Durable: the same 200 body on every read.
    let again = s.get(&location).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), done);
}

#[tokio::test]
async fn a_read_of_a_command_running_here_waits_for_its_end_up_to_result_wait() {
    use std::time::{Duration, Instant};
    let s = Server::start(&["--max-running", "1", "--result-wait", "30s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "sleep 1; echo done"})).await;
    let asked = Instant::now();
    let r = s.get(&location).await;
    assert_eq!(r.status, 200, "answered once the command ended: {}", r.text);
    assert_eq!(r.json()["properties"]["logs"], "done\n");
    assert!(asked.elapsed() >= Duration::from_millis(500), "{:?}", asked.elapsed());

    // A queued command is not running here: its read answers at once.
    let _long = s.submit("rg", "c1", json!({"command": "sleep 60"})).await;
    let queued = s.submit("rg", "c1", json!({"command": "true"})).await;
    let asked = Instant::now();
    let r = s.get(&queued).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["properties"]["provisioningState"], "Accepted");
    assert!(asked.elapsed() < Duration::from_secs(10), "{:?}", asked.elapsed());

    // Longer than the wait: 202 Running after it.
    let (s, location) = server_running_a_long_command("300ms").await;
    let asked = Instant::now();
    let r = s.get(&location).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["properties"]["provisioningState"], "Running");
    assert!(r.header("retry-after").is_some() && r.header("location").is_some());
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(30), "{waited:?}");

    // `0s`: no wait at all.
    let (s, location) = server_running_a_long_command("0s").await;
    let asked = Instant::now();
    assert_eq!(s.get(&location).await.status, 202);
    assert!(asked.elapsed() < Duration::from_secs(30), "{:?}", asked.elapsed());
}

/// A server with `--result-wait` at `wait`, running a command that sleeps a minute.
async fn server_running_a_long_command(wait: &str) -> (Server, String) {
    let s = Server::start(&["--result-wait", wait]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "sleep 60"})).await;
    (s, location)
}

#[tokio::test]
async fn a_command_for_an_idle_worker_is_running_when_acknowledged_and_the_next_one_queues() {
    let s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let first = s.submit("rg", "c1", json!({"command": "sleep 2"})).await;
    // Stored Running in the same write that acknowledged it: no wait for a worker to claim it.
    let running = s.get(&first).await;
    assert_eq!(running.status, 202);
    assert_eq!(running.json()["properties"]["provisioningState"], "Running");
    assert!(running.json()["properties"]["startedAt"].is_string());
    let second = s.submit("rg", "c1", json!({"command": "echo second"})).await;
    let queued = s.get(&second).await;
    assert_eq!(queued.status, 202);
    assert_eq!(queued.json()["properties"]["provisioningState"], "Accepted");
    assert!(queued.json()["properties"].get("startedAt").is_none());
    s.wait(&first).await;
    assert_eq!(s.wait(&second).await["properties"]["logs"], "second\n");
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported_not_failed() {
    let s = Server::start(&[]).await;
    let exit = s.run("echo out; echo err >&2; exit 7").await;
    assert_eq!(exit["properties"]["provisioningState"], "Succeeded");
    assert_eq!(exit["properties"]["exitCode"], 7);
    assert_eq!(exit["properties"]["logs"], "out\nerr\n");
    let killed = s.run("kill -TERM $$").await;
    assert_eq!(killed["properties"]["exitCode"], 128 + 15);
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order() {
    let s = Server::start(&[]).await;
    let result = s.run("for i in 1 2 3; do echo out$i; echo err$i >&2; done").await;
    assert_eq!(result["properties"]["logs"], "out1\nerr1\nout2\nerr2\nout3\nerr3\n");
}

#[tokio::test]
async fn attached_files_are_in_the_working_directory() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let zip = zip_of(&[
        ("ns.yaml", b"kind: Namespace\n"),
        ("dir/.hidden", b"secret-ish\n"),
        ("run.sh", b"echo from script\n"),
    ]);
    let context = encodebytes(&zip);
    assert!(context.contains('\n'), "wrapped like base64.encodebytes");
    let command = "cat ns.yaml; cat dir/.hidden; bash run.sh; [ \"$HOME\" = \"$PWD\" ] && echo home-is-workdir";
    let location = s.submit("rg", "c1", json!({"command": command, "context": context})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["logs"], "kind: Namespace\nsecret-ish\nfrom script\nhome-is-workdir\n");
}

#[tokio::test]
async fn bad_contexts_and_commands_are_refused_at_submission() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let run = format!("{}/runCommand", cluster_path("rg", "c1"));
    for (body, target) in [
        (json!({"command": ""}), "command"),
        (json!({"command": "   "}), "command"),
        (json!({"context": ""}), "command"),
        (json!({"command": "ls", "context": "!!!not base64!!!"}), "context"),
        (json!({"command": "ls", "context": encodebytes(b"just some text, not a zip")}), "context"),
        (json!({"command": "ls", "context": encodebytes(&zip_of(&[("../escape", b"x")]))}), "context"),
    ] {
        let r = s.post(&run, body.clone()).await;
        let message = r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], target, "{body}");
        assert!(message.contains(&format!("'{target}'")), "{message}");
    }
}

#[tokio::test]
async fn disabled_and_aad_clusters_refuse_as_section_5_says() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "off", json!({"apiServerAccessProfile": {"disableRunCommand": true}})).await;
    let r = s.post(&format!("{}/runCommand", cluster_path("rg", "off")), json!({"command": "true"})).await;
    let message = r.assert_error(400, "RunCommandDisabled");
    assert!(message.contains("off"), "{message}");

    let (_, kubeconfig) = kubeconfig_for("https://203.0.113.10:6443");
    s.create_cluster("rg", "aad", json!({"aadProfile": {"managed": true}, "kubeconfig": kubeconfig})).await;
    let run = format!("{}/runCommand", cluster_path("rg", "aad"));
    for body in [json!({"command": "true"}), json!({"command": "true", "clusterToken": ""})] {
        let message = s.post(&run, body).await.assert_error(400, "MissingAADClusterToken");
        assert_eq!(message, "This cluster have Azure Active Directory enabled, .clusterToken is required.");
    }
    // A token that is not ours for the AKS AAD server app is refused, naming clusterToken.
    for bad in ["not-a-token".to_string(), s.token.clone()] {
        let r = s.post(&run, json!({"command": "true", "clusterToken": bad})).await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], "clusterToken");
    }
    // With a real one, the command's kubeconfig authenticates as the caller, not as the admin.
    let caller_token = s.token_for(&s.admin().unwrap(), "6dae42f8-4368-4678-94ff-3960e28e3630/.default").await;
    let show_user = "kubectl config view --raw --minify -o jsonpath='{.users[0].user.token}'";
    let location = s.submit("rg", "aad", json!({"command": show_user, "clusterToken": caller_token})).await;
    assert_eq!(s.wait(&location).await["properties"]["logs"], caller_token.as_str());
}

#[tokio::test]
async fn commands_see_a_cleared_environment_and_the_cluster_kubeconfig() {
    let s = Server::start(&[]).await;
    let (_, encoded) = kubeconfig_for("https://203.0.113.10:6443");
    s.create_cluster("rg", "k8s", json!({"kubeconfig": encoded})).await;
    let command = "kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'; echo; \
                   stat -c %a \"$KUBECONFIG\"; env | cut -d= -f1 | sort | tr '\\n' ' '";
    let location = s.submit("rg", "k8s", json!({"command": command})).await;
    let result = s.wait(&location).await;
    let logs = result["properties"]["logs"].as_str().unwrap().to_string();
    let mut lines = logs.lines();
    assert_eq!(lines.next(), Some("https://203.0.113.10:6443"), "{logs}");
    assert_eq!(lines.next(), Some("600"), "{logs}");
    let vars: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    for expected in ["HOME", "KUBECONFIG", "LANG", "PATH"] {
        assert!(vars.contains(&expected), "{expected} missing: {vars:?}");
    }
    assert!(!vars.contains(&SERVER_ONLY_VAR), "server environment leaked: {vars:?}");
    let allowed = ["HOME", "KUBECONFIG", "LANG", "PATH", "PWD", "SHLVL", "TMPDIR", "_", "OLDPWD"];
    assert!(vars.iter().all(|v| allowed.contains(v)), "unexpected variables: {vars:?}");
}

#[tokio::test]
async fn working_directories_are_removed_and_leftover_processes_killed() {
    if !bubblewrap_here() {
        return;
    }
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    // Sleep lengths no other test uses: the check below looks at every process on the host.
    let command = "pwd; touch made-here; (sleep 317; echo leaked) & setsid sleep 318 & echo bye";
    let location = s.submit("rg", "c1", json!({"command": command})).await;
    let result = s.wait(&location).await;
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert_eq!(logs, "/home/command\nbye\n", "the working directory is HOME inside the sandbox");
    let id = location.split("/commandResults/").nth(1).unwrap().split('?').next().unwrap();
    // The working directory is named by the id, its private /tmp by the id and `.tmp`.
    let leftovers = std::process::Command::new("find")
        .args([
            "/tmp",
            &s.data_dir().to_string_lossy(),
            "-maxdepth",
            "3",
            "-name",
            id,
            "-o",
            "-name",
            &format!("{id}.tmp"),
        ])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&leftovers.stdout).to_string();
    assert!(found.trim().is_empty(), "working directory was not removed: {found}");
    for pattern in ["sleep 317", "sleep 318"] {
        let pids = std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap();
        let pids = String::from_utf8_lossy(&pids.stdout).to_string();
        assert!(pids.trim().is_empty(), "{pattern:?} survived its command: {pids}");
    }
}
