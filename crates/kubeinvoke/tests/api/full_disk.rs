//! A full disk under the data directory, for real: the server's data directory is a small tmpfs
//! the test fills while a command runs. New submissions are refused with 507 naming the cause, the
//! running command ends `Failed` with a reason (never `Succeeded` without its output), stored
//! results stay readable, the database stays sound, and freeing space is all it takes to recover.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use kubeinvoke_testkit::small_disk::SmallDisk;

#[tokio::test]
async fn a_full_data_directory_refuses_new_work_fails_running_commands_with_a_reason_and_recovers_when_freed() {
    if !kubeinvoke_testkit::prerequisites::runs("the full-disk test", SmallDisk::missing()) {
        return;
    }
    // Bigger than the default reserve of free space (64 MiB), so the reserve is what a fill crosses.
    let mut server = Server::start_on_small_disk(&[], 160 << 20).await;
    server.create_cluster("rg", "c1", json!({})).await;
    let stored = server.submit("rg", "c1", json!({"command": "echo stored"})).await;
    assert_eq!(server.wait(&stored).await["properties"]["provisioningState"], "Succeeded");
    // Prints a line every 20 ms for a minute: its live output grows on the data directory.
    let line = "x".repeat(100);
    let running = server
        .submit("rg", "c1", json!({"command": format!("for i in $(seq 3000); do echo $i-{line}; sleep 0.02; done")}))
        .await;
    server.wait_for_state(&running, "Running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let filler = server.small_disk().fill();
    assert!(server.small_disk().free() < 1 << 20, "the disk is full: {} bytes free", server.small_disk().free());
    let refused = server.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "true"})).await;
    let message = refused.assert_error(507, "InsufficientStorage");
    assert!(message.contains("out of space"), "{message}");
    assert!(refused.header("retry-after").is_some(), "a 507 says when to retry");
    // What was stored stays readable.
    let read = server.get(&stored).await;
    assert_eq!((read.status.as_u16(), read.json()["properties"]["logs"].as_str()), (200, Some("stored\n")));
    // The running command is stopped: its output can no longer be kept. Its result waits for
    // room in the database, and is never an end it did not have.
    let full_since = Instant::now();
    while full_since.elapsed() < Duration::from_secs(3) {
        let r = server.get(&running).await;
        assert!(r.status == 202 || r.status == 200, "{}: {}", r.status, r.text);
        assert_ne!(r.json()["properties"]["provisioningState"], "Succeeded", "{}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.server_log().contains("DataDirectoryFull"),
        "the server says why it stopped the command: {}",
        server.server_log()
    );

    std::fs::remove_file(&filler).unwrap();
    let properties = server.wait(&running).await["properties"].clone();
    assert_eq!(properties["provisioningState"], "Failed", "{properties}");
    let reason = properties["reason"].as_str().unwrap();
    assert!(reason.starts_with("DataDirectoryFull: "), "{reason}");
    let logs = properties["logs"].as_str().unwrap();
    assert!(logs.starts_with(&format!("1-{line}\n")), "the output up to the stop is kept: {logs:.200}");
    assert!(logs.trim_end().ends_with("the command was killed"), "{}", &logs[logs.len().saturating_sub(300)..]);

    // Space is back: the same process takes work again.
    let pid = server.pid();
    let after = server.submit("rg", "c1", json!({"command": "echo after"})).await;
    assert_eq!(server.wait(&after).await["properties"]["logs"], "after\n");
    assert_eq!(server.pid(), pid);
    // And the database is sound.
    server.kill9();
    let db = rusqlite::Connection::open(server.data_dir().join("kubeinvoke.db")).unwrap();
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}
