//! Fan-out runs over HTTPS against a real server: selection by tags and ids, the concurrency
//! limit (witnessed outside the sandbox), maxErrors, RBAC skips, restart, cancel, bad input.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

fn group_scope(group: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{group}")
}

fn runs_of(scope: &str) -> String {
    format!("{scope}/providers/Microsoft.ContainerService")
}

async fn create_tagged(s: &Server, group: &str, name: &str, tags: Value) {
    s.create_group(group).await;
    let body = json!({"location": "westeurope", "tags": tags, "properties": {}});
    let r = s.put(&cluster_path(group, name), body).await;
    assert!(r.status.is_success(), "creating {name}: {}", r.text);
}

async fn submit_run(s: &Server, scope: &str, body: Value) -> String {
    let r = s.post(&format!("{}/runCommand", runs_of(scope)), body).await;
    assert_eq!(r.status, 202, "fan-out: {}", r.text);
    assert_eq!(r.json()["type"], "Microsoft.ContainerService/commandRuns", "{}", r.text);
    let location = r.header("location").expect("Location").to_string();
    assert!(location.starts_with("https://") && location.contains("/commandRuns/"), "{location}");
    location
}

async fn wait_run(s: &Server, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = s.get(location).await;
        match r.status.as_u16() {
            200 => return r.json(),
            202 => assert!(r.header("retry-after").is_some(), "a run in progress says when to poll again"),
            other => panic!("polling {location}: {other} {}", r.text),
        }
        assert!(Instant::now() < deadline, "the run did not finish: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn targets(run: &Value) -> &Vec<Value> {
    run["properties"]["targets"].as_array().expect("targets")
}

fn cluster_name(target: &Value) -> String {
    target["clusterId"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn a_fan_out_by_tag_runs_each_selected_cluster_once_within_the_concurrency_limit() {
    let s = Server::start(&[]).await;
    let witness = Witness::start();
    for i in 0..30 {
        let env = if i % 5 < 2 { "prod" } else { "dev" };
        create_tagged(&s, "fleet", &format!("c{i:02}"), json!({"env": env, "team": "platform"})).await;
    }
    // Tagged prod, but in another group: outside a group-scoped run, inside a subscription one.
    create_tagged(&s, "elsewhere", "outside", json!({"env": "prod"})).await;

    let body = json!({"command": witness.command(0.4), "targets": {"tags": {"ENV": "prod"}}, "maxConcurrency": 3});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let run = wait_run(&s, &location).await;

    let properties = &run["properties"];
    assert_eq!(properties["provisioningState"], "Succeeded", "{run}");
    assert_eq!(properties["counts"]["Succeeded"], 12, "{run}");
    assert_eq!(properties["counts"]["Skipped"], 0, "{run}");
    let mut names: Vec<String> = targets(&run).iter().map(cluster_name).collect();
    names.sort();
    let expected: Vec<String> = (0..30).filter(|i| i % 5 < 2).map(|i| format!("c{i:02}")).collect();
    assert_eq!(names, expected);
    for target in targets(&run) {
        assert_eq!(target["exitCode"], 0, "{target}");
        assert!(target["startedAt"].is_string() && target["finishedAt"].is_string(), "{target}");
        // Each target is an ordinary command of its cluster, in that cluster's history.
        let result = result_path("fleet", &cluster_name(target), target["commandId"].as_str().unwrap());
        let r = s.get(&result).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["properties"]["provisioningState"], "Succeeded");
        let history = s.get(&format!("{}/commandResults", cluster_path("fleet", &cluster_name(target)))).await.json();
        assert_eq!(history["value"].as_array().unwrap().len(), 1, "{history}");
    }
    assert_eq!((witness.count("start"), witness.count("end")), (12, 12));
    let most = witness.most_at_once();
    assert!(most <= 3, "{most} commands ran at once with maxConcurrency 3");
    assert!(most >= 2, "the run never ran targets side by side (most at once: {most})");

    // At subscription scope the same tags also reach the other group.
    let body = json!({"command": "true", "targets": {"tags": {"env": "prod"}}, "maxConcurrency": "50%"});
    let run = wait_run(&s, &submit_run(&s, &format!("/subscriptions/{SUB}"), body).await).await;
    assert_eq!(run["properties"]["counts"]["Succeeded"], 13, "{run}");
    assert_eq!(run["properties"]["maxConcurrency"], "50%");
    // Listed newest first at the subscription, and only the group's run under the group.
    let list = s.get(&format!("{}/commandRuns", runs_of(&format!("/subscriptions/{SUB}")))).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    let list = s.get(&format!("{}/commandRuns?api-version={API}&$top=1", runs_of(&group_scope("fleet")))).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    assert!(list.get("nextLink").is_none(), "{list}");
}

#[tokio::test]
async fn max_errors_stops_the_rest_and_counts_say_so() {
    let s = Server::start(&[]).await;
    for i in 0..10 {
        create_tagged(&s, "fleet", &format!("c{i}"), json!({"ring": "1"})).await;
    }
    let body = json!({"command": "exit 3", "targets": {"tags": {"ring": "1"}}, "maxConcurrency": 1, "maxErrors": 2});
    let run = wait_run(&s, &submit_run(&s, &group_scope("fleet"), body).await).await;
    let properties = &run["properties"];
    assert_eq!(properties["provisioningState"], "Failed", "{run}");
    // One at a time: the third failure is more than two, so the other seven never start.
    assert_eq!(properties["counts"]["Succeeded"], 3, "{run}");
    assert_eq!(properties["counts"]["Skipped"], 7, "{run}");
    for target in &targets(&run)[..3] {
        assert_eq!(target["exitCode"], 3, "{target}");
    }
    for target in &targets(&run)[3..] {
        assert_eq!(target["state"], "Skipped");
        assert!(target.get("commandId").is_none(), "{target}");
        assert!(target["reason"].as_str().unwrap().starts_with("MaxErrorsReached"), "{target}");
    }
}

#[tokio::test]
async fn clusters_the_caller_may_not_use_are_listed_as_skipped_never_dropped() {
    let s = Server::start(&[]).await;
    for name in ["a", "b", "c", "d"] {
        create_tagged(&s, "fleet", name, json!({"env": "prod"})).await;
    }
    create_tagged(&s, "hidden", "h", json!({"env": "prod"})).await;
    // Reader on the group (so it sees every cluster there), cluster admin on a and b only.
    let operator = s.create_principal("operator", Some(("Reader", &group_scope("fleet"))));
    let token = s.token_for(&operator, "https://management.azure.com/.default").await;
    let oid = claims_of(&token)["oid"].as_str().unwrap().to_string();
    for name in ["a", "b"] {
        let grant = json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8"),
            "principalId": oid, "principalType": "ServicePrincipal"}});
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
            cluster_path("fleet", name),
            uuid::Uuid::new_v4()
        );
        assert_eq!(s.put(&path, grant).await.status, 201);
    }

    // At subscription scope: the clusters it can see are selected (hidden's group is invisible).
    let submit = format!("{}/runCommand", runs_of(&format!("/subscriptions/{SUB}")));
    let body = json!({"command": "echo hi", "targets": {"tags": {"env": "prod"}}});
    let r = send_as(&s, &token, Method::POST, &submit, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let run = loop {
        let r = send_as(&s, &token, Method::GET, &location, None).await;
        if r.status == 200 {
            break r.json();
        }
        assert_eq!(r.status, 202, "the creator reads its run: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let states: Vec<(String, String)> =
        targets(&run).iter().map(|t| (cluster_name(t), t["state"].as_str().unwrap().to_string())).collect();
    let expected = [("a", "Succeeded"), ("b", "Succeeded"), ("c", "Skipped"), ("d", "Skipped")];
    assert_eq!(states, expected.map(|(n, s)| (n.to_string(), s.to_string())));
    for target in &targets(&run)[2..] {
        let reason = target["reason"].as_str().unwrap();
        assert!(reason.starts_with("AuthorizationFailed") && reason.contains("runcommand/action"), "{reason}");
    }
    // Not every target ran cleanly: the run says so.
    assert_eq!(run["properties"]["provisioningState"], "Failed");

    // Others read a run only with read on its scope.
    let stranger = s.create_principal("stranger", None);
    let stranger = s.token_for(&stranger, "https://management.azure.com/.default").await;
    send_as(&s, &stranger, Method::GET, &location, None).await.assert_error(403, "AuthorizationFailed");
    assert_eq!(s.get(&location).await.status, 200, "the Owner reads every run");
    // Naming a cluster it cannot use gets it skipped too; naming nothing visible is a 400.
    let hidden = cluster_path("hidden", "h");
    let body = json!({"command": "true", "targets": {"clusterIds": [hidden]}});
    let r = send_as(&s, &token, Method::POST, &submit, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["properties"]["targets"][0]["state"], "Skipped", "{}", r.text);
    let body = json!({"command": "true", "targets": {"tags": {"env": "staging"}}});
    let message = send_as(&s, &token, Method::POST, &submit, Some(body)).await.assert_error(400, "InvalidParameter");
    assert!(message.contains("env=staging"), "{message}");
}

#[tokio::test]
async fn a_restart_mid_run_resumes_without_running_anything_twice() {
    let mut s = Server::start(&[]).await;
    let witness = Witness::start();
    for i in 0..6 {
        create_tagged(&s, "fleet", &format!("c{i}"), json!({"wave": "a"})).await;
    }
    let body = json!({"command": witness.command(1.5), "targets": {"tags": {"wave": "a"}}, "maxConcurrency": 2});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while witness.count("start") < 2 {
        assert!(Instant::now() < deadline, "the run never started two targets");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill9();
    s = s.restart().await;
    // The restarted server listens on a new port: poll by path.
    let path = &location[location.find("/subscriptions/").unwrap()..];
    let run = wait_run(&s, path).await;

    let (mut started, mut succeeded) = (0, 0);
    for target in targets(&run) {
        let history = s.get(&format!("{}/commandResults", cluster_path("fleet", &cluster_name(target)))).await.json();
        assert_eq!(history["value"].as_array().unwrap().len(), 1, "each target gets one command: {history}");
        match target["state"].as_str().unwrap() {
            "Succeeded" => {
                assert_eq!(target["exitCode"], 0, "{target}");
                succeeded += 1;
            }
            // What ran when the server died is never re-run: it ends Interrupted.
            "Failed" => assert_eq!(target["reason"], "Interrupted", "{target}"),
            other => panic!("target ended {other}: {target}"),
        }
        started += 1;
    }
    assert_eq!(started, 6);
    assert_eq!(witness.count("start"), 6, "a target ran twice or never: {:?}", witness.events.lock().unwrap());
    // The commands the kill interrupted never reported their end.
    assert_eq!(witness.count("end"), succeeded);
    assert!(succeeded >= 4, "{run}");
}

#[tokio::test]
async fn cancel_stops_what_has_not_finished() {
    let s = Server::start(&[]).await;
    for i in 0..5 {
        create_tagged(&s, "fleet", &format!("c{i}"), json!({"x": "y"})).await;
    }
    let body = json!({"command": "sleep 60", "targets": {"tags": {"x": "y"}}, "maxConcurrency": 2});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = s.get(&location).await.json();
        if run["properties"]["counts"]["Running"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two targets never ran: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancel = location.replace("?api-version", "/cancel?api-version");
    let r = s.send(Method::POST, &cancel, None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let run = wait_run(&s, &location).await;
    assert_eq!(run["properties"]["provisioningState"], "Canceled", "{run}");
    assert_eq!(run["properties"]["counts"]["Canceled"], 5, "{run}");
    let with_commands = targets(&run).iter().filter(|t| t["commandId"].is_string()).count();
    assert_eq!(with_commands, 2, "only the running two had commands: {run}");
    assert!(s.command_processes().is_empty(), "left running: {}", s.command_processes());
    s.send(Method::POST, &cancel, None).await.assert_error(409, "CommandRunAlreadyFinished");
}

#[tokio::test]
async fn bad_fan_out_requests_get_a_400_naming_the_problem() {
    let s = Server::start(&[]).await;
    create_tagged(&s, "fleet", "c1", json!({"env": "prod"})).await;
    let submit = format!("{}/runCommand", runs_of(&group_scope("fleet")));
    let refused = |body: Value| {
        let s = &s;
        let submit = submit.clone();
        async move { s.post(&submit, body).await.assert_error(400, "InvalidParameter") }
    };
    let m = refused(json!({"command": "x", "targets": {"tags": {"env": "none"}}})).await;
    assert!(m.contains("No managed cluster in") && m.contains("env=none"), "{m}");
    let m = refused(json!({"command": "x", "targets": {"tags": {"env": "prod\u{0}"}}})).await;
    assert!(m.contains("control character"), "{m}");
    let m = refused(json!({"command": "x", "targets": {"tags": {"env": ["prod"]}}})).await;
    assert!(m.contains("must be a string"), "{m}");
    let other = cluster_path("other", "c1");
    let m = refused(json!({"command": "x", "targets": {"clusterIds": [other]}})).await;
    assert!(m.contains("not inside the run's scope"), "{m}");
    let m = refused(json!({"command": "x", "targets": {"tags": {"env": "prod"}}, "maxConcurrency": 0})).await;
    assert!(m.starts_with("'maxConcurrency' must be"), "{m}");
    let m = refused(json!({"command": " ", "targets": {"tags": {"env": "prod"}}})).await;
    assert!(m.contains("'command'"), "{m}");
    s.post(&submit, json!([1])).await.assert_error(400, "InvalidRequestContent");
    let missing = format!("{}/runCommand", runs_of(&group_scope("nogroup")));
    s.post(&missing, json!({"command": "x", "targets": {"tags": {"a": "b"}}}))
        .await
        .assert_error(404, "ResourceGroupNotFound");
    // Reads of runs that are not there, or not in that scope.
    let body = json!({"command": "true", "targets": {"tags": {"env": "prod"}}});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let id = location.split("/commandRuns/").nth(1).unwrap().split('?').next().unwrap().to_string();
    let elsewhere = format!("{}/commandRuns/{id}", runs_of(&format!("/subscriptions/{SUB}")));
    s.get(&elsewhere).await.assert_error(404, "NotFound");
    s.get(&format!("{}/commandRuns/{}", runs_of(&group_scope("fleet")), "0".repeat(32)))
        .await
        .assert_error(404, "NotFound");
    s.send(Method::DELETE, &location, None).await.assert_error(405, "MethodNotAllowed");
}

/// A target starts only if its cluster admits it *then*: a cluster that disables run command
/// while the run waits for its turn gets no command, and its target says why.
#[tokio::test]
async fn a_cluster_that_disables_run_command_mid_run_gets_no_command() {
    let s = Server::start(&[]).await;
    for name in ["a", "b"] {
        create_tagged(&s, "fleet", name, json!({"env": "prod"})).await;
    }
    let body = json!({"command": "sleep 2", "targets": {"tags": {"env": "prod"}}, "maxConcurrency": "1"});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = s.get(&location).await.json();
        if targets(&run)[0]["state"] == "Running" {
            assert_eq!(targets(&run)[1]["state"], "Pending", "one at a time: {run}");
            break;
        }
        assert!(Instant::now() < deadline, "the first target never ran: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let disabled = json!({"location": "westeurope", "tags": {"env": "prod"},
        "properties": {"apiServerAccessProfile": {"disableRunCommand": true}}});
    assert_eq!(s.put(&cluster_path("fleet", "b"), disabled).await.status, 200);

    let run = wait_run(&s, &location).await;
    let (a, b) = (&targets(&run)[0], &targets(&run)[1]);
    assert_eq!((cluster_name(a).as_str(), a["state"].as_str()), ("a", Some("Succeeded")), "{run}");
    assert_eq!((cluster_name(b).as_str(), b["state"].as_str()), ("b", Some("Skipped")), "{run}");
    let reason = b["reason"].as_str().unwrap();
    assert!(reason.starts_with("RunCommandDisabled") && reason.contains("disableRunCommand"), "{reason}");
    assert!(b.get("commandId").is_none(), "no command was made for it: {b}");
    let history = s.get(&format!("{}/commandResults", cluster_path("fleet", "b"))).await.json();
    assert_eq!(history["value"], json!([]), "nothing ran on b: {history}");
}

/// A run of 130 clusters is shown with its first 100 targets, the counts of all 130 and a link
/// to the others; the pages cover every target once, in selection order, and only a reader of
/// the run reads them.
#[tokio::test]
async fn a_large_run_shows_its_first_targets_and_pages_the_rest() {
    let s = Server::start(&["--max-running", "8"]).await;
    s.create_group("fleet").await;
    for i in 0..130 {
        let body = json!({"location": "westeurope", "tags": {"env": "prod"}, "properties": {}});
        assert!(s.put(&cluster_path("fleet", &format!("c{i:03}")), body).await.status.is_success());
    }
    let body = json!({"command": "true", "targets": {"tags": {"env": "prod"}}, "maxConcurrency": 16});
    let location = submit_run(&s, &group_scope("fleet"), body).await;
    let run = wait_run(&s, &location).await;
    let properties = &run["properties"];
    assert_eq!(properties["counts"]["Succeeded"], 130, "the counts are of all targets: {}", properties["counts"]);
    assert_eq!(targets(&run).len(), 100, "a run is shown with its first 100 targets");
    let next = properties["targetsNextLink"].as_str().expect("a link to the other targets").to_string();
    assert!(next.starts_with("https://") && next.contains("/targets?api-version=2024-09-01&"), "{next}");

    // The rest, by the link; and all of them again 50 at a time.
    let r = s.get(&next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rest = r.json();
    assert!(rest.get("nextLink").is_none(), "nothing after the last page: {rest}");
    let mut names: Vec<String> =
        targets(&run).iter().chain(rest["value"].as_array().unwrap()).map(cluster_name).collect();
    let expected: Vec<String> = (0..130).map(|i| format!("c{i:03}")).collect();
    assert_eq!(names, expected, "every target once, in selection order");
    let targets_path = format!("{}/targets", location.split('?').next().unwrap());
    let mut page = Some(format!("{targets_path}?api-version=2024-09-01&$top=50"));
    names.clear();
    let mut pages = 0;
    while let Some(url) = page.take() {
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        names.extend(body["value"].as_array().unwrap().iter().map(cluster_name));
        page = body["nextLink"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!((names, pages), (expected, 3));
    // The listing shows each run the same way.
    let listed = s.get(&format!("{}/commandRuns?api-version=2024-09-01", runs_of(&group_scope("fleet")))).await.json();
    assert_eq!(listed["value"][0]["properties"]["targets"].as_array().unwrap().len(), 100);
    assert_eq!(listed["value"][0]["properties"]["counts"]["Succeeded"], 130);

    // Bad pages are refused naming the parameter; nothing else is read.
    let with = |query: &str| format!("{targets_path}?api-version=2024-09-01&{query}");
    for top in ["0", "1001", "x", "-1"] {
        let message = s.get(&with(&format!("$top={top}"))).await.assert_error(400, "InvalidParameter");
        assert!(message.contains("'$top'"), "{message}");
    }
    let message = s.get(&with("$skipToken=abc")).await.assert_error(400, "InvalidParameter");
    assert!(message.contains("continuation token"), "{message}");
    // A principal without read on the run's scope (not its creator) gets 403, run or no run.
    let stranger = s.create_principal("stranger", None);
    let stranger = s.token_for(&stranger, "https://management.azure.com/.default").await;
    send_as(&s, &stranger, Method::GET, &next, None).await.assert_error(403, "AuthorizationFailed");
    let missing = targets_path
        .replace(location.split("/commandRuns/").nth(1).unwrap().split('?').next().unwrap(), &"0".repeat(32));
    send_as(&s, &stranger, Method::GET, &format!("{missing}?api-version=2024-09-01"), None)
        .await
        .assert_error(403, "AuthorizationFailed");
    s.get(&format!("{missing}?api-version=2024-09-01")).await.assert_error(404, "NotFound");
    // The same run under another scope is not there.
    let elsewhere = targets_path.replace("/resourceGroups/fleet", "");
    s.get(&format!("{elsewhere}?api-version=2024-09-01")).await.assert_error(404, "NotFound");
    s.send(Method::POST, &next, None).await.assert_error(405, "MethodNotAllowed");
}
