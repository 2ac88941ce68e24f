//! Attacks on the sandbox: each is an attempt to escape, snoop or exhaust, with an assertion
//! that it failed, that the result says why, and that nothing of it survives on the host.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn logs_of(result: &Value) -> String {
    result["properties"]["logs"].as_str().unwrap_or_default().to_string()
}

/// A command that prints one line per attempt: "<name>: blocked" or "<name>: ESCAPED".
fn attempts(list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(name, attempt)| format!("if {attempt}; then echo '{name}: ESCAPED'; else echo '{name}: blocked'; fi"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn assert_all_blocked(logs: &str, expected: usize) {
    assert!(!logs.contains("ESCAPED"), "an attack worked:\n{logs}");
    assert_eq!(logs.matches(": blocked").count(), expected, "{logs}");
}

#[tokio::test]
async fn commands_cannot_read_the_servers_files() {
    if !bubblewrap_here() {
        return;
    }
    let s = Server::start(&[]).await;
    assert!(s.banner.contains("isolation      bubblewrap"), "{}", s.banner);
    let data = s.data_dir();
    let d = data.display();
    let command = attempts(&[
        ("database", &format!("cat {d}/kubeinvoke.db > /dev/null 2>&1")),
        ("database by find", "find / -name 'kubeinvoke.db*' 2>/dev/null | grep -q ."),
        ("tls key", &format!("cat {d}/tls/server.key > /dev/null 2>&1")),
        ("ca key", &format!("cat {d}/tls/ca.key > /dev/null 2>&1")),
        ("token-signing key", &format!("cat {d}/signing-key.pem > /dev/null 2>&1")),
        ("bootstrap credentials", &format!("cat {d}/bootstrap-admin.json > /dev/null 2>&1")),
        ("data dir listing", &format!("ls {d} > /dev/null 2>&1")),
        ("root home", "ls /root > /dev/null 2>&1"),
        ("shadow", "grep -q root /etc/shadow 2>/dev/null"),
        ("server process", &format!("test -e /proc/{}", s.pid())),
    ]);
    let logs = logs_of(&s.run(&command).await);
    assert_all_blocked(&logs, 10);
}

#[tokio::test]
async fn commands_cannot_see_each_other_or_write_outside_their_directories() {
    if !bubblewrap_here() {
        return;
    }
    let s = Server::start(&["--max-running", "2"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let victim =
        s.submit("rg", "c1", json!({"command": "echo secret-of-victim > note.txt; echo ready; sleep 5"})).await;
    s.wait_for_state(&victim, "Running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let command = attempts(&[
        ("other workdir", "find / -name note.txt 2>/dev/null | grep -q ."),
        ("other processes", "ps -e -o args= | grep -q '[s]leep 5'"),
        ("write /usr", "touch /usr/evil 2>/dev/null"),
        ("write /etc", "touch /etc/evil 2>/dev/null"),
        ("write /", "touch /evil 2>/dev/null"),
        ("write /home", "touch /home/evil 2>/dev/null"),
        ("nested user namespace", "unshare -U true 2>/dev/null"),
    ]) + "; touch ./mine /tmp/mine && echo 'own dirs: writable'";
    let attacker = s.submit("rg", "c1", json!({"command": command})).await;
    let logs = logs_of(&s.wait(&attacker).await);
    assert_all_blocked(&logs, 7);
    assert!(logs.contains("own dirs: writable"), "{logs}");
    assert_eq!(logs_of(&s.wait(&victim).await), "ready\n");
    assert!(!std::path::Path::new("/usr/evil").exists() && !std::path::Path::new("/evil").exists());
}

#[tokio::test]
async fn commands_cannot_signal_the_server() {
    let s = Server::start(&[]).await;
    let result = s.run(&format!("kill -9 {} 2>&1; kill -9 -1 2>&1; echo still-here", s.pid())).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert!(s.get(&group_path("rg")).await.status.is_success(), "the server must keep answering");
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_leaves_nothing_behind() {
    let s = Server::start(&["--max-processes", "64", "--command-timeout", "5s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let bomb = s.submit("rg", "c1", json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived"})).await;
    // The server keeps answering while the bomb goes off.
    for _ in 0..10 {
        assert_eq!(s.get(&cluster_path("rg", "c1")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = s.wait(&bomb).await;
    let logs = logs_of(&result);
    assert!(logs.contains("process limit of 64"), "the result says which limit: {logs}");
    assert_eq!(s.command_processes(), "", "processes of the bomb survived");
}

#[tokio::test]
async fn a_memory_hog_hits_the_memory_limit() {
    let s = Server::start(&["--max-memory-bytes", "200000000"]).await;
    let result = s.run("head -c 1G /dev/zero | tail -n 1 > /dev/null").await;
    assert_ne!(result["properties"]["exitCode"], 0);
    let logs = logs_of(&result);
    assert!(logs.contains("memory limit of 200000000 bytes"), "{logs}");
}

#[tokio::test]
async fn a_huge_file_hits_the_file_size_limit() {
    let s = Server::start(&["--max-file-bytes", "1000000"]).await;
    let result = s.run("head -c 100M /dev/zero > big; ls -l big | awk '{print $5}'").await;
    let logs = logs_of(&result);
    assert!(logs.contains("size limit of 1000000 bytes"), "{logs}");
    assert!(logs.contains("1000000\n"), "the file stopped at the limit: {logs}");
}

#[tokio::test]
async fn filling_the_working_directory_is_stopped() {
    let s = Server::start(&["--max-workdir-bytes", "5000000", "--max-file-bytes", "1000000"]).await;
    let result = s.run("for i in $(seq 1 100); do head -c 900K /dev/zero > f$i; sleep 0.05; done; echo finished").await;
    let p = &result["properties"];
    assert_eq!(p["provisioningState"], "Failed");
    assert_eq!(p["reason"], "WorkingDirectoryLimit");
    assert!(!logs_of(&result).contains("finished"));
    // /tmp inside the sandbox is capped the same way (a tmpfs of that size).
    let result = s.run("head -c 20M /dev/zero > /tmp/fill 2>&1; echo exit=$?").await;
    assert!(logs_of(&result).contains("exit=1"), "{result}");
}

#[tokio::test]
async fn cpu_time_is_limited() {
    let s = Server::start(&["--max-cpu-seconds", "1"]).await;
    let result = s.run("while :; do :; done").await;
    assert_eq!(result["properties"]["exitCode"], 128 + 24, "SIGXCPU");
    assert!(logs_of(&result).contains("CPU time limit of 1 s"));
}

#[tokio::test]
async fn endless_output_and_term_ignoring_children_end_at_the_timeout() {
    let s = Server::start(&["--command-timeout", "2s", "--log-cap-bytes", "10000"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let writer = s.submit("rg", "c1", json!({"command": "yes"})).await;
    let stubborn = s
        .submit("rg", "c1", json!({"command": "trap '' TERM; (trap '' TERM; setsid sleep 100) & (trap '' TERM; sleep 100) & sleep 100"}))
        .await;
    for location in [writer, stubborn] {
        let result = s.wait(&location).await;
        assert_eq!(result["properties"]["reason"], "Timeout", "{result}");
    }
    assert_eq!(s.command_processes(), "", "processes survived the timeout");
}

#[tokio::test]
async fn cluster_limits_tighten_the_servers() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "tight", json!({"commandLimits": {"timeoutSeconds": 1}})).await;
    let location = s.submit("rg", "tight", json!({"command": "sleep 10"})).await;
    assert_eq!(s.wait(&location).await["properties"]["reason"], "Timeout");
    let r = s.put(&cluster_path("rg", "bad"), json!({"properties": {"commandLimits": {"timeoutSeconds": -5}}})).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("properties.commandLimits"));
    let r = s.put(&cluster_path("rg", "bad"), json!({"properties": {"commandLimits": {"noSuchLimit": 5}}})).await;
    r.assert_error(400, "InvalidParameter");
}

#[tokio::test]
async fn network_can_be_turned_off() {
    if !bubblewrap_here() {
        return;
    }
    let probe = |s: &Server| {
        let port = s.base.rsplit(':').next().unwrap().to_string();
        format!("(echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo net=up || echo net=down")
    };
    let on = Server::start(&[]).await;
    assert_eq!(logs_of(&on.run(&probe(&on)).await), "net=up\n");
    let off = Server::start(&["--exec-network", "none"]).await;
    assert_eq!(logs_of(&off.run(&probe(&off)).await), "net=down\n");
}

#[tokio::test]
async fn without_bubblewrap_landlock_still_protects_the_server() {
    // A PATH without bwrap: the server falls back to Landlock and says so everywhere.
    let env = [("PATH", "/usr/local/bin:/usr/sbin:/sbin")];
    let s = Server::start_with_env(&[], &env).await;
    assert!(s.banner.contains("isolation      landlock"), "{}", s.banner);
    let ready = reply(s.client.get(format!("{}/readyz", s.base))).await.json();
    assert_eq!(ready["isolation"], "landlock");
    let metrics = reply(s.client.get(format!("{}/metrics", s.base))).await.text;
    assert!(metrics.contains("kubeinvoke_executor_isolation{mode=\"landlock\"} 1"), "{metrics}");
    let d = s.data_dir();
    let command = attempts(&[
        ("database", &format!("cat {}/kubeinvoke.db > /dev/null 2>&1", d.display())),
        ("tls key", &format!("cat {}/tls/server.key > /dev/null 2>&1", d.display())),
        ("token-signing key", &format!("cat {}/signing-key.pem > /dev/null 2>&1", d.display())),
        ("write /tmp", "touch /tmp/kubeinvoke-escape-test 2>/dev/null"),
        ("write /usr", "touch /usr/evil 2>/dev/null"),
    ]) + "; touch ./mine \"$TMPDIR/mine\" && echo 'own dirs: writable'";
    let logs = logs_of(&s.run(&command).await);
    assert_all_blocked(&logs, 5);
    assert!(logs.contains("own dirs: writable"), "{logs}");

    let refused = Server::start_refused(&["--require-sandbox"], &env);
    assert!(refused.contains("isolation is not available"), "{refused}");
}

#[tokio::test]
async fn isolation_is_reported_in_readyz_and_metrics() {
    if !bubblewrap_here() {
        return;
    }
    let s = Server::start(&[]).await;
    let health = reply(s.client.get(format!("{}/healthz", s.base))).await;
    assert_eq!(health.status, 200);
    let ready = reply(s.client.get(format!("{}/readyz", s.base))).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"status": "ready", "store": "ok", "isolation": "bubblewrap"}));
    let metrics = reply(s.client.get(format!("{}/metrics", s.base))).await.text;
    assert!(metrics.contains("kubeinvoke_executor_isolation{mode=\"bubblewrap\"} 1"), "{metrics}");
    assert!(metrics.contains("kubeinvoke_executor_isolation{mode=\"none\"} 0"), "{metrics}");
}
