//! Crashes, restarts and retention (issue: results durable in SQLite).

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn sigkill_interrupts_running_commands_and_keeps_finished_results() {
    let mut s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let finished = s.submit("rg", "c1", json!({"command": "echo kept; exit 4"})).await;
    let before = s.wait(&finished).await;
    let sleeping = s.submit("rg", "c1", json!({"command": "sleep 30"})).await;
    s.wait_for_state(&sleeping, "Running").await;
    let queued = s.submit("rg", "c1", json!({"command": "echo ran-after-restart"})).await;
    assert_eq!(s.get(&queued).await.json()["properties"]["provisioningState"], "Accepted");

    s.kill9();
    let s = s.restart().await;

    let interrupted = s.wait(&s.url(&rebase(&sleeping, &s.base))).await;
    assert_eq!(interrupted["properties"]["provisioningState"], "Failed");
    assert_eq!(interrupted["properties"]["reason"], "Interrupted");
    assert!(interrupted["properties"]["finishedAt"].is_string());

    let resumed = s.wait(&rebase(&queued, &s.base)).await;
    assert_eq!(resumed["properties"]["provisioningState"], "Succeeded");
    assert_eq!(resumed["properties"]["logs"], "ran-after-restart\n");

    let after = s.get(&rebase(&finished, &s.base)).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.json(), before, "finished results are unchanged by the crash");

    // Interrupted commands are never re-run: still the same terminal result after another restart.
    let s = s.restart().await;
    let again = s.get(&rebase(&sleeping, &s.base)).await.json();
    assert_eq!(again, interrupted);
}

/// The restarted server listens on a new port: point a Location at it.
fn rebase(location: &str, base: &str) -> String {
    let path = location.splitn(4, '/').nth(3).unwrap();
    format!("{base}/{path}")
}

#[tokio::test]
async fn results_expire_after_the_retention() {
    let s = Server::start(&["--retention", "1s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo short-lived"})).await;
    assert_eq!(s.wait(&location).await["properties"]["logs"], "short-lived\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.get(&location).await.assert_error(404, "NotFound");
    // The janitor also deletes the rows, not just hides them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.count("SELECT COUNT(*) FROM commands").await, 0);
}

#[tokio::test]
async fn no_command_process_outlives_a_crashed_server() {
    if !bubblewrap_here() {
        return;
    }
    for sandbox in ["bubblewrap", "landlock"] {
        let mut s = Server::start(&["--sandbox", sandbox]).await;
        s.create_cluster("rg", "c1", json!({})).await;
        let location = s.submit("rg", "c1", json!({"command": "sleep 300; echo never"})).await;
        s.wait_for_state(&location, "Running").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!s.command_processes().is_empty(), "{sandbox}: the command should be running");
        s.kill9();
        let s = s.restart().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !s.command_processes().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{sandbox}: survived: {}", s.command_processes());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_stored_cluster_setting_that_cannot_be_used_fails_the_command_naming_it() {
    let s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let first = s.submit("rg", "c1", json!({"command": "sleep 2"})).await;
    s.wait_for_state(&first, "Running").await;
    let queued = s.submit("rg", "c1", json!({"command": "echo never"})).await;
    // While it waits, the stored cluster gets a setting no version of the API would accept.
    s.execute(
        r#"UPDATE clusters SET document = '{"location": "westeurope", "properties": {"commandExecutor": "vm"}}'"#,
    )
    .await;
    let result = s.wait(&queued).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    let reason = result["properties"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("InvalidClusterSetting: 'properties.commandExecutor'"), "{reason}");
    assert!(result["properties"]["logs"].as_str().unwrap().contains("was not run"), "{result}");
    assert_eq!(s.wait(&first).await["properties"]["exitCode"], 0, "the running command was not disturbed");
}
