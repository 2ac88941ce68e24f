//! Run commands as ARM resources (`…/managedClusters/{name}/runCommands/{name}`): a PUT runs an
//! ordinary command and answers like a long-running create, a PUT that changes nothing runs
//! nothing, DELETE cancels, and a resource write is never a way around a run right,
//! `disableRunCommand` or an approval; protected values are never shown.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

fn rc_path(cluster: &str, name: &str) -> String {
    format!("{}/runCommands/{name}", cluster_path("rg", cluster))
}

/// Polls the resource until its provisioningState is terminal, as ARM clients do.
async fn deployed(s: &Server, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let resource = r.json();
        if ["Succeeded", "Failed", "Canceled"].contains(&resource["properties"]["provisioningState"].as_str().unwrap())
        {
            return resource;
        }
        assert!(Instant::now() < deadline, "never deployed: {resource}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn script(text: &str) -> Value {
    json!({"location": "westeurope", "properties": {"source": {"script": text}}})
}

#[tokio::test]
async fn a_put_runs_its_script_and_the_resource_shows_the_output() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let path = rc_path("c1", "hello");
    let created = s.put(&path, script("echo hello; sleep 0.5")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    assert_eq!(body["properties"]["provisioningState"], "Creating", "not terminal while it runs: {body}");
    assert_eq!(body["type"], "Microsoft.ContainerService/managedClusters/runCommands");
    assert_eq!(body["id"], path.split('?').next().unwrap());

    let done = deployed(&s, &path).await;
    let view = &done["properties"]["instanceView"];
    assert_eq!(done["properties"]["provisioningState"], "Succeeded", "{done}");
    assert_eq!((view["executionState"].as_str(), view["exitCode"].as_i64()), (Some("Succeeded"), Some(0)));
    assert_eq!(view["output"], "hello\n");
    assert!(view["startTime"].is_string() && view["endTime"].is_string(), "{view}");
    assert_eq!(done["properties"]["source"], json!({"script": "echo hello; sleep 0.5"}));
    // It is an ordinary command of the cluster: its result is there too.
    let command_id = view["commandId"].as_str().unwrap().to_string();
    let result = s.get(&format!("{}/commandResults/{command_id}", cluster_path("rg", "c1"))).await;
    assert_eq!(result.json()["properties"]["logs"], "hello\n");

    // The same PUT again runs nothing; a changed script runs again.
    let again = s.put(&path, script("echo hello; sleep 0.5")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["properties"]["instanceView"]["commandId"], command_id.as_str());
    assert_eq!(again.json()["properties"]["provisioningState"], "Succeeded");
    let changed = s.put(&path, script("echo changed")).await;
    assert_eq!(changed.status, 200);
    let redone = deployed(&s, &path).await;
    assert_ne!(redone["properties"]["instanceView"]["commandId"], command_id.as_str());
    assert_eq!(redone["properties"]["instanceView"]["output"], "changed\n");
    let history = s.get(&format!("{}/commandResults", cluster_path("rg", "c1"))).await.json();
    assert_eq!(history["value"].as_array().unwrap().len(), 2, "two runs, not three: {history}");

    let list = s.get(&format!("{}/runCommands", cluster_path("rg", "c1"))).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["name"], "hello");
}

#[tokio::test]
async fn failure_async_execution_and_delete() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    // A failed script fails the deployment only when asked to.
    let lenient = s.put(&rc_path("c1", "lenient"), script("echo oops; exit 3")).await;
    assert_eq!(lenient.status, 201, "{}", lenient.text);
    let done = deployed(&s, &rc_path("c1", "lenient")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    let view = &done["properties"]["instanceView"];
    assert_eq!((view["executionState"].as_str(), view["exitCode"].as_i64()), (Some("Failed"), Some(3)));
    let strict = json!({"properties": {"source": {"script": "exit 3"}, "treatFailureAsDeploymentFailure": true}});
    assert_eq!(s.put(&rc_path("c1", "strict"), strict).await.status, 201);
    assert_eq!(deployed(&s, &rc_path("c1", "strict")).await["properties"]["provisioningState"], "Failed");

    // asyncExecution: deployed at once, the command runs on.
    let background = json!({"properties": {"source": {"script": "sleep 30"}, "asyncExecution": true}});
    let r = s.put(&rc_path("c1", "background"), background).await;
    assert_eq!(r.json()["properties"]["provisioningState"], "Succeeded", "{}", r.text);
    let command_id = r.json()["properties"]["instanceView"]["commandId"].as_str().unwrap().to_string();
    let result = format!("{}/commandResults/{command_id}", cluster_path("rg", "c1"));
    s.wait_for_state(&result, "Running").await;
    // Its live output is the ordinary command's.
    let logs = s.get(&format!("{result}/logs")).await;
    assert_eq!(logs.status, 200, "{}", logs.text);
    // DELETE cancels what still runs, and the resource is gone.
    assert_eq!(s.send(Method::DELETE, &rc_path("c1", "background"), None).await.status, 200);
    assert_eq!(s.wait(&result).await["properties"]["provisioningState"], "Canceled");
    s.get(&rc_path("c1", "background")).await.assert_error(404, "ResourceNotFound");
    assert_eq!(s.send(Method::DELETE, &rc_path("c1", "background"), None).await.status, 204);
    // Its cluster's deletion takes the rest.
    assert_eq!(s.send(Method::DELETE, &cluster_path("rg", "c1"), None).await.status, 200);
    s.create_cluster("rg", "c1", json!({})).await;
    let list = s.get(&format!("{}/runCommands", cluster_path("rg", "c1"))).await.json();
    assert_eq!(list["value"], json!([]), "{list}");
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_property_and_store_nothing() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let saved = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/savedCommands/x");
    for (body, target) in [
        (json!({"properties": {}}), "properties.source"),
        (json!({"properties": {"source": {}}}), "properties.source"),
        (json!({"properties": {"source": {"script": "a", "savedCommandId": saved}}}), "properties.source"),
        (json!({"properties": {"source": {"script": ""}}}), "properties.source.script"),
        (json!({"properties": {"source": {"script": "a", "commandId": "x"}}}), "properties.source.commandId"),
        (json!({"properties": {"source": {"script": "a", "parameters": {"a": "b"}}}}), "properties.source.parameters"),
        (json!({"properties": {"source": {"script": "a"}, "timeoutInSeconds": 0}}), "properties.timeoutInSeconds"),
        (json!({"properties": {"source": {"script": "a"}, "asyncExecution": "yes"}}), "properties.asyncExecution"),
        (json!({"properties": {"source": {"savedCommandId": "/not/an/id"}}}), "properties.source.savedCommandId"),
        (json!({"properties": "x"}), "properties"),
    ] {
        let r = s.put(&rc_path("c1", "bad"), body.clone()).await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], target, "{body}: {}", r.text);
    }
    s.get(&rc_path("c1", "bad")).await.assert_error(404, "ResourceNotFound");
    let r = s.put(&rc_path("c1", "bad%2F..%2Fx"), script("true")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    s.put(&rc_path("nope", "x"), script("true")).await.assert_error(404, "ResourceNotFound");
    let history = s.get(&format!("{}/commandResults", cluster_path("rg", "c1"))).await.json();
    assert_eq!(history["value"], json!([]), "nothing ran");
}

#[tokio::test]
async fn a_resource_write_is_no_way_around_a_run_right_a_switch_or_an_approval() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.create_cluster("rg", "locked", json!({"apiServerAccessProfile": {"disableRunCommand": true}})).await;
    s.create_cluster("rg", "held", json!({"commandApproval": {"mode": "always"}})).await;
    let saved = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/savedCommands/echo");
    let body = json!({"properties": {"script": "echo \"[$who]\" \"$token\"", "parameters": {"who": {"type": "string"}, "token": {"type": "secret"}}}});
    assert_eq!(s.put(&saved, body).await.status, 201);

    // May write run command resources, and run saved commands only.
    let role_id = uuid::Uuid::new_v4().to_string();
    let role = json!({"properties": {
        "roleName": "Resource runner", "type": "CustomRole", "assignableScopes": [format!("/subscriptions/{SUB}")],
        "permissions": [{"actions": ["Microsoft.ContainerService/managedClusters/runCommands/*",
                                     "Microsoft.ContainerService/managedClusters/runSavedCommand/action", "*/read"]}]
    }});
    let definition = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}?api-version=2022-04-01"
    );
    assert_eq!(s.put(&definition, role).await.status, 201);
    let runner = s.create_principal("resource-runner", None);
    let token = s.token_for(&runner, "https://management.azure.com/.default").await;
    let oid = claims_of(&token)["oid"].as_str().unwrap().to_string();
    let grant = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"), "principalId": oid, "principalType": "ServicePrincipal"}});
    let assignment = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid::Uuid::new_v4()
    );
    assert_eq!(s.put(&assignment, grant).await.status, 201);

    let as_runner = |path: String, body: Value| {
        let (s, token) = (&s, token.clone());
        async move { send_as(s, &token, Method::PUT, &path, Some(body)).await }
    };
    let r = as_runner(rc_path("c1", "sneaky"), script("id")).await;
    let message = r.assert_error(403, "AuthorizationFailed");
    assert!(message.contains("runcommand/action"), "{message}");
    s.get(&rc_path("c1", "sneaky")).await.assert_error(404, "ResourceNotFound");

    // The saved command it may run, with a protected value that is never shown or kept.
    let secret = format!("protected-{}", uuid::Uuid::new_v4());
    let body = json!({"properties": {"source": {"savedCommandId": saved, "parameters": {"who": "me"}, "protectedParameters": {"token": secret}}}});
    let r = as_runner(rc_path("c1", "allowed"), body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let done = deployed(&s, &rc_path("c1", "allowed")).await;
    assert_eq!(done["properties"]["instanceView"]["output"], "[me] ***\n", "masked in its output: {done}");
    assert!(!done.to_string().contains(&secret), "{done}");
    assert_eq!(done["properties"]["source"], json!({"savedCommandId": saved, "parameters": {"who": "me"}}));
    let unchanged = as_runner(rc_path("c1", "allowed"), body).await;
    assert_eq!(
        unchanged.json()["properties"]["instanceView"]["commandId"],
        done["properties"]["instanceView"]["commandId"]
    );
    assert!(!s.server_log().contains(&secret), "the protected value is in the server log");
    for table in ["arm_documents", "commands"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE CAST(document AS TEXT) LIKE '%{secret}%'");
        let sql = if table == "commands" { sql.replace("document", "environment") } else { sql };
        assert_eq!(s.count(&sql).await, 0, "the protected value is stored in {table}");
    }
    let exposed = json!({"properties": {"source": {"savedCommandId": saved, "protectedParameters": {"who": "me", "token": "t"}}}});
    let r = as_runner(rc_path("c1", "exposed"), exposed).await;
    r.assert_error(400, "InvalidParameter");
    assert_eq!(r.json()["error"]["target"], "properties.source.protectedParameters.who");

    // disableRunCommand holds for a resource's script, as for runCommand.
    s.put(&rc_path("locked", "x"), script("id")).await.assert_error(400, "RunCommandDisabled");
    s.get(&rc_path("locked", "x")).await.assert_error(404, "ResourceNotFound");
    // And an approval: the command waits, and so does the deployment.
    assert_eq!(s.put(&rc_path("held", "x"), script("echo held")).await.status, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = s.get(&rc_path("held", "x")).await.json();
    assert_eq!(waiting["properties"]["provisioningState"], "Creating", "{waiting}");
    assert_eq!(waiting["properties"]["instanceView"]["executionState"], "Pending");
    // Without the write action, nothing.
    let reader = s.create_principal("rc-reader", Some(("Reader", &format!("/subscriptions/{SUB}"))));
    let token = s.token_for(&reader, "https://management.azure.com/.default").await;
    let r = send_as(&s, &token, Method::PUT, &rc_path("c1", "r"), Some(script("true"))).await;
    assert!(r.assert_error(403, "AuthorizationFailed").contains("runCommands/write"));
    let r = send_as(&s, &token, Method::DELETE, &rc_path("c1", "allowed"), None).await;
    r.assert_error(403, "AuthorizationFailed");
    assert_eq!(send_as(&s, &token, Method::GET, &rc_path("c1", "allowed"), None).await.status, 200);
}
