//! Extensions beyond AKS: live output, cancel and history (under the same ARM paths).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn output_streams_live_and_resumes_from_an_offset() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo first; sleep 2; echo second"})).await;
    let id = id_of(&location);
    let url = s.url(&format!("{}/logs?api-version={API}&follow=true", result_path("rg", "c1", &id)));
    let asked = Instant::now();
    let mut response = s.client.get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let first = response.chunk().await.unwrap().expect("a first chunk");
    assert!(asked.elapsed() < Duration::from_millis(1500), "the first line arrives before the command ends");
    assert_eq!(&first[..], b"first\n");
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second\n", "the stream closes when the command ends");
    assert!(asked.elapsed() >= Duration::from_secs(2));
    let resumed = s.get(&format!("{}/logs?api-version={API}&offset=6", result_path("rg", "c1", &id))).await;
    assert_eq!(resumed.text, "second\n");
    s.get(&format!("{}/logs?api-version={API}&offset=-1", result_path("rg", "c1", &id)))
        .await
        .assert_error(400, "InvalidParameter");
    s.get(&format!("{}/logs", result_path("rg", "c1", "0123456789abcdef0123456789abcdef")))
        .await
        .assert_error(404, "NotFound");
}

#[tokio::test]
async fn full_output_beyond_the_result_cap_and_across_a_restart() {
    let mut s = Server::start(&["--log-cap-bytes", "100"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "seq 1 1000; echo marker; sleep 30"})).await;
    let id = id_of(&location);
    let logs = format!("{}/logs", result_path("rg", "c1", &id));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.get(&logs).await.text.contains("marker") {
        assert!(Instant::now() < deadline, "output never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.kill9();
    let s = s.restart().await;
    let after = s.get(&logs).await.text;
    let expected: String = (1..=1000).map(|i| format!("{i}\n")).collect::<String>() + "marker\n";
    assert_eq!(after, expected, "everything written before the crash is still there, beyond the 100-byte result cap");
    let result = s.get(&result_path("rg", "c1", &id)).await.json();
    assert_eq!(result["properties"]["reason"], "Interrupted");
}

#[tokio::test]
async fn cancel_stops_the_whole_tree_and_says_who() {
    let s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let running = s.submit("rg", "c1", json!({"command": "(sleep 100 &); setsid sleep 101 & sleep 102"})).await;
    s.wait_for_state(&running, "Running").await;
    let queued = s.submit("rg", "c1", json!({"command": "echo never"})).await;
    let admin = s.admin().unwrap();
    for location in [&queued, &running] {
        let r = s.post(&format!("{}/cancel", result_path("rg", "c1", &id_of(location))), json!({})).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert!(r.header("location").is_some());
    }
    for location in [&queued, &running] {
        let result = s.wait(location).await;
        assert_eq!(result["properties"]["provisioningState"], "Canceled", "{result}");
        assert_eq!(result["properties"]["reason"], format!("Canceled by {}", admin.app_id));
    }
    assert_eq!(s.command_processes(), "", "processes of a canceled command survived");
    let r = s.post(&format!("{}/cancel", result_path("rg", "c1", &id_of(&running))), json!({})).await;
    let message = r.assert_error(409, "CommandAlreadyFinished");
    assert!(message.contains("Canceled"), "{message}");
    let done = s.submit("rg", "c1", json!({"command": "true"})).await;
    s.wait(&done).await;
    s.post(&format!("{}/cancel", result_path("rg", "c1", &id_of(&done))), json!({}))
        .await
        .assert_error(409, "CommandAlreadyFinished");
    s.post(&format!("{}/cancel", result_path("rg", "c1", "nope")), json!({})).await.assert_error(404, "NotFound");
}

#[tokio::test]
async fn history_pages_newest_first_and_stays_within_its_cluster() {
    let s = Server::start(&["--max-running", "4"]).await;
    s.create_cluster("rg", "a", json!({})).await;
    s.create_cluster("rg", "b", json!({})).await;
    let mut submitted = Vec::new();
    for i in 0..250 {
        submitted.push(id_of(&s.submit("rg", "a", json!({"command": format!("exit {}", i % 3)})).await));
    }
    let other = id_of(&s.submit("rg", "b", json!({"command": "true"})).await);
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/commandResults?api-version={API}&$top=100", cluster_path("rg", "a")));
    let mut pages = 0;
    while let Some(url) = next {
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        pages += 1;
        for entry in body["value"].as_array().unwrap() {
            assert!(entry["properties"]["logs"].is_null(), "logs are omitted");
            assert!(entry["properties"]["command"].as_str().unwrap().starts_with("exit "));
            assert!(entry["properties"]["submittedBy"].as_str().unwrap().contains(&s.admin().unwrap().app_id));
            seen.push(entry["id"].as_str().unwrap().to_string());
        }
        next = body.get("nextLink").and_then(Value::as_str).map(str::to_string);
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert!(!seen.contains(&other));
    // Filter by state once everything has finished.
    for id in submitted.iter().rev().take(3) {
        s.wait(&s.url(&result_path("rg", "a", id))).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let filtered = s
        .get(&format!(
            "{}/commandResults?api-version={API}&$top=1000&$filter=provisioningState%20eq%20'Succeeded'",
            cluster_path("rg", "a")
        ))
        .await
        .json();
    assert!(filtered["value"].as_array().unwrap().iter().all(|e| e["properties"]["provisioningState"] == "Succeeded"));
    s.get(&format!("{}/commandResults?api-version={API}&$top=0", cluster_path("rg", "a")))
        .await
        .assert_error(400, "InvalidParameter");
}
