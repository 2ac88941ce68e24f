//! Four eyes: commands a cluster holds for approval wait, take no queue place and run only once
//! enough principals other than their requester said yes; a rejection cancels, silence expires.
//! Every refusal is shown from the side of the principal who tries to get past it.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const APPROVE_ACTION: &str = "Microsoft.ContainerService/managedClusters/commandResults/approve/action";
const MGMT: &str = "https://management.azure.com/.default";

fn cluster_scope(cluster: &str) -> String {
    cluster_path("rg", cluster)
}

fn held_cluster(mode: &str, approvers: u8, expires: &str) -> Value {
    json!({"commandApproval": {"mode": mode, "approvers": approvers, "expiresAfter": expires}})
}

/// A principal with a role on cluster `c1`, and its token.
async fn principal(s: &Server, name: &str, role: &str) -> (Credentials, String) {
    let who = s.create_principal(name, Some((role, &cluster_scope("c1"))));
    let token = s.token_for(&who, MGMT).await;
    (who, token)
}

/// A principal holding only a custom role with the approve action (and reads) on `c1`: its token.
async fn approver(s: &Server, name: &str) -> String {
    approver_credentials(s, name).await.1
}

/// As [`approver`], with the principal's credentials.
pub(crate) async fn approver_credentials(s: &Server, name: &str) -> (Credentials, String) {
    approver_at(s, name, &cluster_scope("c1")).await
}

/// A principal holding the approve action (and reads) at `scope`.
async fn approver_at(s: &Server, name: &str, scope: &str) -> (Credentials, String) {
    let role_id = uuid::Uuid::new_v4().to_string();
    let definition = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}?api-version=2022-04-01"
    );
    let role = json!({"properties": {
        "roleName": format!("Approver {name}"), "type": "CustomRole",
        "assignableScopes": [format!("/subscriptions/{SUB}")],
        "permissions": [{"actions": [APPROVE_ACTION, "Microsoft.ContainerService/*/read"], "notActions": []}]
    }});
    let r = s.put(&definition, role).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let who = s.create_principal(name, None);
    let token = s.token_for(&who, MGMT).await;
    let oid = claims_of(&token)["oid"].as_str().unwrap().to_string();
    let body = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"), "principalId": oid, "principalType": "ServicePrincipal"}});
    let path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid::Uuid::new_v4()
    );
    assert_eq!(s.put(&path, body).await.status, 201);
    (who, token)
}

async fn submit_as(s: &Server, token: &str, command: &str) -> String {
    let body = json!({"command": command, "context": ""});
    let r = send_as(s, token, Method::POST, &format!("{}/runCommand", cluster_scope("c1")), Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.header("location").expect("Location").to_string()
}

/// `…/commandResults/{id}` of a Location, without its query.
fn result_of(location: &str) -> String {
    let path = location.split_once("/subscriptions/").map(|(_, p)| format!("/subscriptions/{p}")).unwrap();
    path.split('?').next().unwrap().to_string()
}

async fn decide(s: &Server, token: &str, location: &str, verdict: &str, reason: Value) -> Reply {
    let path = format!("{}/{verdict}", result_of(location));
    send_as(s, token, Method::POST, &path, Some(reason)).await
}

async fn approve(s: &Server, token: &str, location: &str) -> Reply {
    decide(s, token, location, "approve", json!({"reason": "looked at it"})).await
}

/// Polls a held command while it keeps waiting, checking nothing ran.
async fn still_waiting(s: &Server, location: &str) {
    for _ in 0..5 {
        let r = s.get(location).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let properties = &r.json()["properties"];
        assert_eq!(properties["provisioningState"], "PendingApproval", "{}", r.text);
        assert!(properties.get("startedAt").is_none(), "a held command never starts: {}", r.text);
        assert!(r.header("location").is_some() && r.header("retry-after").is_some(), "clients keep polling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_held_command_runs_only_after_another_principal_approves() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1H")).await;
    let (_, requester) = principal(&s, "requester", "Azure Kubernetes Service Cluster Admin Role").await;
    let location = submit_as(&s, &requester, "echo ran-after-approval").await;
    still_waiting(&s, &location).await;
    // The history shows it waiting.
    let history = s.get(&format!("{}/commandResults", cluster_scope("c1"))).await.json();
    assert_eq!(history["value"][0]["properties"]["provisioningState"], "PendingApproval", "{history}");

    // The requester's role cannot approve, nor can Contributor's `*`.
    approve(&s, &requester, &location).await.assert_error(403, "AuthorizationFailed");
    let (_, contributor) = principal(&s, "contributor", "Contributor").await;
    approve(&s, &contributor, &location).await.assert_error(403, "AuthorizationFailed");
    still_waiting(&s, &location).await;

    // A custom role with the action can; the answer shows the approval.
    let approver = approver(&s, "approver").await;
    let r = approve(&s, &approver, &location).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let view = r.json();
    assert_eq!(view["properties"]["approvals"][0]["reason"], "looked at it", "{view}");
    let state = view["properties"]["provisioningState"].as_str().unwrap();
    assert!(["Accepted", "Running", "Succeeded"].contains(&state), "released into the queue: {view}");
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["logs"], "ran-after-approval\n");
    // A decided command takes no more decisions.
    approve(&s, &approver, &location).await.assert_error(409, "CommandNotPendingApproval");
}

#[tokio::test]
async fn the_requester_never_approves_and_each_approver_counts_once() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 2, "PT1H")).await;
    // The bootstrap admin is Owner: it holds the action, and still may not approve its own command.
    let location = s.submit("rg", "c1", json!({"command": "echo two", "context": ""})).await;
    let own = approve(&s, &s.token, &location).await;
    assert!(own.assert_error(403, "SelfApprovalNotAllowed").contains("two-person"), "{}", own.text);

    let first = approver(&s, "first").await;
    let r = approve(&s, &first, &location).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["properties"]["provisioningState"], "PendingApproval");
    assert_eq!(r.json()["properties"]["approvalsNeeded"], 2);
    approve(&s, &first, &location).await.assert_error(409, "ApprovalAlreadyGiven");
    still_waiting(&s, &location).await;

    let second = approver(&s, "second").await;
    assert_eq!(approve(&s, &second, &location).await.status, 200);
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["logs"], "two\n", "{result}");
}

#[tokio::test]
async fn a_rejected_command_ends_canceled_naming_who_and_why() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 2, "PT1H")).await;
    let location = s.submit("rg", "c1", json!({"command": "echo never", "context": ""})).await;
    let approver = approver(&s, "approver").await;
    let app_id = claims_of(&approver)["appid"].as_str().unwrap().to_string();
    // A reason is required, and is one line.
    decide(&s, &approver, &location, "reject", json!({})).await.assert_error(400, "InvalidParameter");
    decide(&s, &approver, &location, "reject", json!({"reason": "drop\r\ntable"}))
        .await
        .assert_error(400, "InvalidParameter");
    decide(&s, &approver, &location, "reject", json!({"reason": "x".repeat(2000)}))
        .await
        .assert_error(400, "InvalidParameter");
    let r = decide(&s, &approver, &location, "reject", json!({"reason": "not during the freeze"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Canceled", "{result}");
    let reason = result["properties"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("Rejected by") && reason.contains(&app_id), "{reason}");
    assert!(reason.ends_with("not during the freeze"), "{reason}");
    assert_eq!(result["properties"]["logs"], "");
    approve(&s, &approver, &location).await.assert_error(409, "CommandNotPendingApproval");
}

#[tokio::test]
async fn a_command_nobody_decides_on_expires_without_running() {
    let s = Server::start(&["--lease", "2s"]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT2S")).await;
    let location = s.submit("rg", "c1", json!({"command": "echo late", "context": ""})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert!(result["properties"]["reason"].as_str().unwrap().starts_with("ApprovalExpired"), "{result}");
    assert!(result["properties"].get("startedAt").is_none(), "{result}");
    let approver = approver(&s, "approver").await;
    approve(&s, &approver, &location).await.assert_error(409, "CommandNotPendingApproval");
}

#[tokio::test]
async fn an_approval_given_after_the_deadline_is_refused_and_the_command_expires() {
    // A lease keeper slower than the deadline: the decision itself finds it expired.
    let s = Server::start(&["--lease", "60s"]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1S")).await;
    let location = s.submit("rg", "c1", json!({"command": "echo late", "context": ""})).await;
    let approver = approver(&s, "approver").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    approve(&s, &approver, &location).await.assert_error(409, "ApprovalExpired");
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
}

#[tokio::test]
async fn free_form_only_lets_vetted_saved_commands_through_and_holds_free_form_lines() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("freeFormOnly", 1, "PT1H")).await;
    let saved =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/savedCommands/hello");
    assert_eq!(s.put(&saved, json!({"properties": {"script": "echo vetted"}})).await.status, 201);
    let runner = s.create_principal("runner", Some(("Contributor", &group_path("rg"))));
    let token = s.token_for(&runner, MGMT).await;
    let run_saved = |token: String| {
        let s = &s;
        let saved = saved.clone();
        async move {
            let body = json!({"savedCommand": saved});
            let r =
                send_as(s, &token, Method::POST, &format!("{}/runSavedCommand", cluster_scope("c1")), Some(body)).await;
            assert_eq!(r.status, 202, "{}", r.text);
            r.header("location").unwrap().to_string()
        }
    };
    // Written by the admin, run by another principal: vetted, it runs at once.
    let result = s.wait(&run_saved(token.clone()).await).await;
    assert_eq!(result["properties"]["logs"], "vetted\n", "{result}");
    // A free-form line is held.
    still_waiting(&s, &submit_as(&s, &token, "echo free").await).await;
    // A saved command its runner wrote last is nobody else's vetting: held too.
    let r = send_as(&s, &token, Method::PUT, &saved, Some(json!({"properties": {"script": "echo rewritten"}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    still_waiting(&s, &run_saved(token).await).await;
}

#[tokio::test]
async fn the_approver_sees_what_would_run_but_never_a_secret_value() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1H")).await;
    let saved = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/savedCommands/deploy");
    let body = json!({"properties": {"script": "echo \"$env\"", "parameters": {"env": {"type": "string"}, "token": {"type": "secret"}}}});
    assert_eq!(s.put(&saved, body).await.status, 201);
    let run = json!({"savedCommand": saved, "parameters": {"env": "prod", "token": "hunter2-secret"}});
    let r = s.post(&format!("{}/runSavedCommand", cluster_scope("c1")), run).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let saved_location = r.header("location").unwrap().to_string();
    let zip = zip_of(&[("manifest.yaml", b"kind: ConfigMap\n"), ("values.txt", b"0123456789")]);
    let context = base64::engine::general_purpose::STANDARD.encode(&zip);
    let location = s.submit("rg", "c1", json!({"command": "cat values.txt", "context": context})).await;

    let approver = approver(&s, "approver").await;
    let view = send_as(&s, &approver, Method::GET, &format!("{}/approval", result_of(&location)), None).await;
    assert_eq!(view.status, 200, "{}", view.text);
    let properties = &view.json()["properties"];
    assert_eq!(properties["command"], "cat values.txt");
    assert_eq!(properties["approvalsNeeded"], 1);
    assert!(
        properties["requestedBy"].as_str().unwrap().contains(&claims_of(&s.token)["oid"].as_str().unwrap().to_string())
    );
    assert_eq!(properties["clusterId"].as_str().unwrap().to_lowercase(), cluster_scope("c1").to_lowercase());
    assert_eq!(properties["files"], json!([{"name": "manifest.yaml", "size": 16}, {"name": "values.txt", "size": 10}]));
    let got =
        s.client.get(s.url(&format!("{}/context", result_of(&location)))).bearer_auth(&approver).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/zip");
    assert_eq!(got.bytes().await.unwrap().as_ref(), zip.as_slice(), "the zip as it will be unpacked");

    let view = send_as(&s, &approver, Method::GET, &format!("{}/approval", result_of(&saved_location)), None).await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert!(!view.text.contains("hunter2"), "{}", view.text);
    assert_eq!(view.json()["properties"]["parameters"], json!({"env": "prod", "token": "(secret)"}));
    assert_eq!(view.json()["properties"]["savedCommand"].as_str().unwrap().to_lowercase(), saved.to_lowercase());

    // Who may not approve may not look either; a command that was never held has no approval.
    let (_, runner) = principal(&s, "runner", "Azure Kubernetes Service Cluster Admin Role").await;
    send_as(&s, &runner, Method::GET, &format!("{}/approval", result_of(&location)), None)
        .await
        .assert_error(403, "AuthorizationFailed");
    send_as(&s, &runner, Method::GET, &format!("{}/context", result_of(&location)), None)
        .await
        .assert_error(403, "AuthorizationFailed");
    s.create_cluster("rg", "free", json!({})).await;
    let free = s.submit("rg", "free", json!({"command": "true", "context": ""})).await;
    s.get(&format!("{}/approval", result_of(&free))).await.assert_error(404, "ApprovalNotFound");
    let missing = format!("{}/commandResults/{}/approval", cluster_scope("c1"), "0".repeat(32));
    s.get(&missing).await.assert_error(404, "NotFound");
}

#[tokio::test]
async fn pending_approvals_lists_what_waits_for_the_caller_only() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 2, "PT1H")).await;
    s.create_cluster("rg", "other", held_cluster("always", 1, "PT1H")).await;
    let held = s.submit("rg", "c1", json!({"command": "echo one", "context": ""})).await;
    s.submit("rg", "other", json!({"command": "echo elsewhere", "context": ""})).await;
    let list = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/pendingApprovals");
    let approver = approver(&s, "approver").await;
    let ids = |reply: Reply| -> Vec<String> {
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["value"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()
    };
    let id = result_of(&held).rsplit('/').next().unwrap().to_string();
    // The approver's role covers c1 only.
    assert_eq!(ids(send_as(&s, &approver, Method::GET, &list, None).await), vec![id.clone()]);
    // The requester's own commands do not wait for it.
    assert!(ids(s.get(&list).await).is_empty());
    // Once it approved, it waits for someone else.
    assert_eq!(approve(&s, &approver, &held).await.status, 200);
    assert!(ids(send_as(&s, &approver, Method::GET, &list, None).await).is_empty());
    let (_, reader) = principal(&s, "reader", "Reader").await;
    assert!(ids(send_as(&s, &reader, Method::GET, &list, None).await).is_empty());
    let group_list =
        format!("/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.ContainerService/pendingApprovals");
    assert!(ids(s.get(&group_list).await).is_empty());
}

#[tokio::test]
async fn held_commands_take_no_queue_place_and_a_restart_loses_none() {
    let s = Server::start(&["--max-running", "1", "--queue-capacity", "1"]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1H")).await;
    let mut waiting = Vec::new();
    for n in 0..5 {
        let location = s.submit("rg", "c1", json!({"command": format!("echo held-{n}"), "context": ""})).await;
        // The restarted server listens elsewhere: poll by path.
        waiting.push(format!("{}?api-version=2024-09-01", result_of(&location)));
    }
    let s = s.restart().await;
    for location in &waiting {
        still_waiting(&s, location).await;
    }
    // The requester may still cancel its own.
    let r = s.post(&format!("{}/cancel", result_of(&waiting[4])), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait(&waiting[4]).await["properties"]["provisioningState"], "Canceled");
    let approver = approver(&s, "approver").await;
    for location in &waiting[..4] {
        assert_eq!(approve(&s, &approver, location).await.status, 200);
    }
    for (n, location) in waiting[..4].iter().enumerate() {
        let result = s.wait(location).await;
        assert_eq!(result["properties"]["logs"], format!("held-{n}\n"), "{result}");
    }
}

#[tokio::test]
async fn who_may_not_approve_may_not_turn_approval_off() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1H")).await;
    let (_, contributor) = principal(&s, "contributor", "Contributor").await;
    let rg = s.create_principal("rg-contributor", Some(("Contributor", &group_path("rg"))));
    let rg_token = s.token_for(&rg, MGMT).await;
    let put = |token: String, properties: Value| {
        let s = &s;
        async move {
            let body = json!({"location": "westeurope", "properties": properties});
            send_as(s, &token, Method::PUT, &cluster_scope("c1"), Some(body)).await
        }
    };
    put(contributor.clone(), json!({})).await.assert_error(403, "AuthorizationFailed");
    put(contributor.clone(), held_cluster("off", 1, "PT1H")).await.assert_error(403, "AuthorizationFailed");
    put(contributor.clone(), held_cluster("always", 1, "P7D")).await.assert_error(403, "AuthorizationFailed");
    send_as(&s, &contributor, Method::DELETE, &cluster_scope("c1"), None)
        .await
        .assert_error(403, "AuthorizationFailed");
    send_as(&s, &rg_token, Method::DELETE, &group_path("rg"), None).await.assert_error(403, "AuthorizationFailed");
    // The same policy again, and unrelated changes, are a Contributor's to make.
    let r = put(contributor.clone(), json!({"commandApproval": {"mode": "always", "approvers": 1, "expiresAfter": "PT1H"}, "commandLimits": {"timeoutSeconds": 60}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let location = submit_as(&s, &contributor, "echo still-held").await;
    still_waiting(&s, &location).await;
    // Owner may.
    let r = s.put(&cluster_scope("c1"), json!({"location": "westeurope", "properties": {}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A bad policy is refused naming it.
    let r = s
        .put(&cluster_scope("c2"), json!({"location": "westeurope", "properties": held_cluster("always", 4, "PT1H")}))
        .await;
    assert!(r.assert_error(400, "InvalidParameter").contains("'approvers'"), "{}", r.text);
    assert_eq!(r.json()["error"]["target"], "properties.commandApproval");
    let r = s.put(&cluster_scope("c2"), json!({"location": "westeurope", "properties": {"commandApproval": {"mode": "always", "expiresAfter": "PT1H\nX"}}})).await;
    r.assert_error(400, "InvalidParameter");
}

async fn fan_out(s: &Server, expires: &str) -> String {
    s.create_cluster("rg", "c1", json!({})).await;
    s.create_cluster("rg", "held", held_cluster("freeFormOnly", 1, expires)).await;
    let body = json!({"command": "echo fan", "targets": {"clusterIds": [cluster_scope("c1"), cluster_scope("held")]}});
    let r = s.post(&format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/runCommand"), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    result_of(r.header("location").unwrap())
}

async fn run_until_done(s: &Server, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(&format!("{run}?api-version=2024-09-01")).await;
        if r.status == 200 {
            return r.json();
        }
        assert!(Instant::now() < deadline, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn target_states(run: &Value) -> Vec<String> {
    run["properties"]["targets"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_fan_out_to_a_held_cluster_is_approved_once_as_a_whole_before_any_target_starts() {
    let s = Server::start(&[]).await;
    let run = fan_out(&s, "PT1H").await;
    for _ in 0..5 {
        let r = s.get(&format!("{run}?api-version=2024-09-01")).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let view = r.json();
        assert_eq!(view["properties"]["provisioningState"], "PendingApproval", "{view}");
        assert_eq!(target_states(&view), ["Pending", "Pending"], "not even the free cluster starts: {view}");
        assert_eq!(view["properties"]["approval"]["approvalsNeeded"], 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let approve_run = |token: String| {
        let s = &s;
        let path = format!("{run}/approve?api-version=2024-09-01");
        async move { send_as(s, &token, Method::POST, &path, Some(json!({"reason": "fleet change 7"}))).await }
    };
    // Its creator may not; one who may approve on one of its clusters only may not either.
    approve_run(s.token.clone()).await.assert_error(403, "SelfApprovalNotAllowed");
    let (_, on_one) = approver_at(&s, "one-cluster", &cluster_scope("held")).await;
    approve_run(on_one).await.assert_error(403, "AuthorizationFailed");
    let (_, approver) = approver_at(&s, "group", &group_path("rg")).await;
    let r = approve_run(approver.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["properties"]["approval"]["approvals"][0]["reason"], "fleet change 7");
    let done = run_until_done(&s, &run).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded", "{done}");
    assert_eq!(target_states(&done), ["Succeeded", "Succeeded"], "{done}");
    // The held cluster's command ran without asking again: the run was approved as a whole.
    approve_run(approver).await.assert_error(409, "CommandNotPendingApproval");
}

#[tokio::test]
async fn a_rejected_fan_out_is_canceled_and_an_undecided_one_expires() {
    let s = Server::start(&[]).await;
    let run = fan_out(&s, "PT1H").await;
    let (_, approver) = approver_at(&s, "group", &group_path("rg")).await;
    let path = format!("{run}/reject?api-version=2024-09-01");
    let r = send_as(&s, &approver, Method::POST, &path, Some(json!({"reason": "wrong fleet"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = run_until_done(&s, &run).await;
    assert_eq!(done["properties"]["provisioningState"], "Canceled", "{done}");
    assert_eq!(target_states(&done), ["Canceled", "Canceled"], "{done}");
    let reason = done["properties"]["targets"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("Rejected by") && reason.ends_with("wrong fleet"), "{reason}");

    let s = Server::start(&[]).await;
    let run = fan_out(&s, "PT1S").await;
    let done = run_until_done(&s, &run).await;
    assert_eq!(done["properties"]["provisioningState"], "Failed", "{done}");
    assert_eq!(target_states(&done), ["Skipped", "Skipped"], "{done}");
    assert!(done["properties"]["targets"][1]["reason"].as_str().unwrap().starts_with("ApprovalExpired"), "{done}");
}

#[tokio::test]
async fn a_cluster_that_starts_holding_after_a_run_was_accepted_gets_no_unapproved_command() {
    let s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.create_cluster("rg", "later", json!({})).await;
    let body = json!({"command": "sleep 1", "maxConcurrency": "1", "targets": {"clusterIds": [cluster_scope("c1"), cluster_scope("later")]}});
    let r = s.post(&format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/runCommand"), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let run = result_of(r.header("location").unwrap());
    let r = s
        .put(
            &cluster_scope("later"),
            json!({"location": "westeurope", "properties": held_cluster("always", 1, "PT1H")}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = run_until_done(&s, &run).await;
    let later = &done["properties"]["targets"][1];
    assert_eq!(later["state"], "Skipped", "{done}");
    assert!(later["reason"].as_str().unwrap().starts_with("ApprovalRequired"), "{done}");
}

#[tokio::test]
async fn the_activity_log_names_the_requester_and_the_approver() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", held_cluster("always", 1, "PT1H")).await;
    let location = s.submit("rg", "c1", json!({"command": "echo logged", "context": ""})).await;
    let approver = approver(&s, "approver").await;
    let approver_app = claims_of(&approver)["appid"].as_str().unwrap().to_string();
    assert_eq!(approve(&s, &approver, &location).await.status, 200);
    s.wait(&location).await;
    let id = result_of(&location).rsplit('/').next().unwrap().to_string();
    let path = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=eventTimestamp%20ge%202020-01-01T00:00:00Z%20and%20correlationId%20eq%20'{id}'"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let statuses = loop {
        let events = s.get(&path).await.json();
        let statuses: Vec<(String, String)> = events["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["status"]["value"].as_str().unwrap().to_string(), e["caller"].as_str().unwrap().to_string()))
            .collect();
        if statuses.iter().any(|(s, _)| s == "Succeeded") || Instant::now() > deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let caller_of = |status: &str| statuses.iter().find(|(s, _)| s == status).map(|(_, c)| c.clone());
    assert!(caller_of("ApprovalRequested").is_some(), "{statuses:?}");
    assert_eq!(caller_of("Approved"), Some(approver_app), "{statuses:?}");
    assert!(caller_of("Accepted").is_some() && caller_of("Started").is_some(), "{statuses:?}");
}

#[tokio::test]
async fn openapi_describes_the_state_the_endpoints_and_the_action() {
    let s = Server::start(&[]).await;
    let spec = reply(s.client.get(format!("{}/openapi.json", s.base))).await.json();
    let paths = spec["paths"].as_object().unwrap();
    for tail in ["/approve", "/reject", "/approval", "/context"] {
        assert!(paths.keys().any(|p| p.ends_with(&format!("commandResults/{{commandId}}{tail}"))), "{tail}");
    }
    assert!(paths.keys().any(|p| p.ends_with("/pendingApprovals")));
    let text = spec.to_string();
    assert!(
        text.contains("PendingApproval") && text.contains(APPROVE_ACTION) && text.contains("SelfApprovalNotAllowed")
    );
}
