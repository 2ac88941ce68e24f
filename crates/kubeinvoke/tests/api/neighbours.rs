//! Several servers on one host, all on the default uid range: none disturbs another's commands.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, id_of, result_path};

#[tokio::test]
async fn servers_on_the_defaults_never_disturb_each_others_commands() {
    let a = Server::start(&[]).await;
    a.create_cluster("rg", "c1", json!({})).await;
    let long_a = a.submit("rg", "c1", json!({"command": "sleep 4; echo done-a"})).await;
    a.wait_for_state(&long_a, "Running").await;

    // A second server starts (its startup must not touch A's uids), runs a long command too, and
    // a third finishes, cancels and crashes around both.
    let b = Server::start(&[]).await;
    b.create_cluster("rg", "c1", json!({})).await;
    let long_b = b.submit("rg", "c1", json!({"command": "sleep 3; echo done-b"})).await;
    b.wait_for_state(&long_b, "Running").await;

    let mut c = Server::start(&[]).await;
    c.create_cluster("rg", "c1", json!({})).await;
    for i in 0..6 {
        let done = c.wait(&c.submit("rg", "c1", json!({"command": format!("echo c{i}")})).await).await;
        assert_eq!(done["properties"]["exitCode"], 0, "{done}");
    }
    let canceled = c.submit("rg", "c1", json!({"command": "sleep 60"})).await;
    c.wait_for_state(&canceled, "Running").await;
    let r = c.post(&format!("{}/cancel", result_path("rg", "c1", &id_of(&canceled))), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(c.wait(&canceled).await["properties"]["provisioningState"], "Canceled");
    let crashed = c.submit("rg", "c1", json!({"command": "sleep 60"})).await;
    c.wait_for_state(&crashed, "Running").await;
    c.kill9();
    let c = c.restart().await;
    // The restarted server listens on another port: address the result by its path.
    let crashed = result_path("rg", "c1", &id_of(&crashed));
    assert_eq!(c.wait(&crashed).await["properties"]["reason"], "Interrupted");
    let after = c.wait(&c.submit("rg", "c1", json!({"command": "echo after-restart"})).await).await;
    assert_eq!(after["properties"]["logs"], "after-restart\n");

    for (server, location, marker) in [(&a, &long_a, "done-a\n"), (&b, &long_b, "done-b\n")] {
        let result = server.wait(location).await;
        assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
        assert_eq!(result["properties"]["exitCode"], 0, "a neighbour killed the command: {result}");
        assert_eq!(result["properties"]["logs"], marker, "{result}");
    }
    // Each server's commands ran under uids leased to it alone, and none is left behind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for server in [&a, &b, &c] {
        assert_eq!(server.command_processes(), "");
    }
}

#[tokio::test]
async fn concurrent_commands_of_two_servers_never_share_a_uid() {
    let debug = [("KUBEINVOKE_LOG", "debug")];
    let servers = [Server::start_with_env(&[], &debug).await, Server::start_with_env(&[], &debug).await];
    let mut running = Vec::new();
    for s in &servers {
        s.create_cluster("rg", "c1", json!({})).await;
        for _ in 0..3 {
            running.push((s, s.submit("rg", "c1", json!({"command": "id -u; sleep 2"})).await));
        }
    }
    let mut uids = Vec::new();
    for (s, location) in &running {
        let result = s.wait(location).await;
        if result["properties"]["exitCode"] != 0 {
            for s in &servers {
                eprintln!("=== {}\n{}", s.base, s.server_log());
            }
        }
        assert_eq!(result["properties"]["exitCode"], 0, "{result}");
        uids.push(result["properties"]["logs"].as_str().unwrap().trim().to_string());
    }
    let distinct: std::collections::BTreeSet<_> = uids.iter().collect();
    assert_eq!(distinct.len(), uids.len(), "two running commands shared a uid: {uids:?}");
}

#[tokio::test]
async fn a_uid_lock_directory_others_could_write_is_refused_at_startup() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test needs root: command uids are leased only by a root server");
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let locks = dir.path().to_str().unwrap();
    let refused = Server::start_refused(&["--exec-uid-locks", locks], &[]);
    assert!(refused.contains("writable by no one else") && refused.contains(locks), "{refused}");
}
