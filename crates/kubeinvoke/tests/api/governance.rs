//! Governance: saved commands with typed parameters (injection inert, secrets never stored or
//! shown), custom roles used by authorization, `disableRunCommand` vs saved commands, and
//! per-request timeouts that only lower the limits.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

fn sub_scope() -> String {
    format!("/subscriptions/{SUB}")
}

fn saved_path(name: &str) -> String {
    format!("{}/providers/Microsoft.ContainerService/savedCommands/{name}", sub_scope())
}

/// Prints each parameter between bars, so the output shows exactly what the script received.
const ECHO_SCRIPT: &str = r#"printf '[%s]' "$text" "$level" "$lines"; echo; [ "$token" = "$(printf 'the %s' token)" ] && echo token-ok || echo token-wrong"#;

async fn put_echo(s: &Server) {
    let body = json!({"properties": {
        "description": "shows its parameters",
        "script": ECHO_SCRIPT,
        "parameters": {
            "text": {"type": "string", "maxLength": 200},
            "level": {"type": "enum", "values": ["info", "debug", "x; id"]},
            "lines": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            "token": {"type": "secret"}
        }
    }});
    let r = s.put(&saved_path("echo"), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn run_saved(s: &Server, cluster: &str, body: Value) -> Reply {
    s.post(&format!("{}/runSavedCommand", cluster_path("rg", cluster)), body).await
}

#[tokio::test]
async fn parameters_reach_the_script_only_as_environment_variables() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    put_echo(&s).await;
    let nasty = [
        "x; touch /tmp/pwned",
        "$(id)",
        "`id`",
        "a' b \" c",
        "line\nbreak; echo injected",
        "${PATH}",
        "&& rm -rf / ||",
    ];
    for value in nasty {
        let body = json!({"savedCommand": saved_path("echo"), "parameters": {"text": value, "level": "x; id", "lines": "7", "token": "the token"}});
        let r = run_saved(&s, "c1", body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let result = s.wait(r.header("location").unwrap()).await;
        let logs = result["properties"]["logs"].as_str().unwrap();
        assert_eq!(logs, format!("[{value}][x; id][7]\ntoken-ok\n"), "the value arrived as data, unchanged");
    }
    // The integer and enum types refuse what they do not hold, naming the parameter.
    for (parameters, target) in [
        (json!({"text": "a", "level": "trace", "token": "t"}), "parameters.level"),
        (json!({"text": "a", "level": "info", "lines": "1; id", "token": "t"}), "parameters.lines"),
        (json!({"text": "a", "level": "info", "lines": 1000, "token": "t"}), "parameters.lines"),
        (json!({"text": "a", "level": "info"}), "parameters.token"),
        (json!({"text": "a", "level": "info", "token": "t", "other": "x"}), "parameters.other"),
        (json!({"text": 5, "level": "info", "token": "t"}), "parameters.text"),
    ] {
        let r = run_saved(&s, "c1", json!({"savedCommand": saved_path("echo"), "parameters": parameters})).await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], target, "{}", r.text);
    }
    // A pattern is matched against the whole value.
    let body = json!({"properties": {"script": "kubectl get pods -n \"$ns\"", "parameters": {"ns": {"type": "string", "pattern": "[a-z0-9-]{1,63}"}}}});
    assert_eq!(s.put(&saved_path("pods"), body).await.status, 201);
    let r = run_saved(&s, "c1", json!({"savedCommand": saved_path("pods"), "parameters": {"ns": "ok-but; id"}})).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("does not match its pattern"));
}

#[tokio::test]
async fn a_secret_parameter_appears_nowhere_but_in_the_command() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    put_echo(&s).await;
    // The token the script expects, and a unique one to search for everywhere afterwards.
    let secret = "the token".to_string();
    let unique = format!("sekret-{}", uuid::Uuid::new_v4().simple());
    let mut locations = Vec::new();
    for token in [secret.as_str(), unique.as_str()] {
        let body =
            json!({"savedCommand": saved_path("echo"), "parameters": {"text": "t", "level": "info", "token": token}});
        let r = run_saved(&s, "c1", body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        locations.push(r.header("location").unwrap().to_string());
    }
    let right = s.wait(&locations[0]).await;
    assert!(right["properties"]["logs"].as_str().unwrap().ends_with("token-ok\n"), "{right}");
    let wrong = s.wait(&locations[1]).await;
    assert!(wrong["properties"]["logs"].as_str().unwrap().ends_with("token-wrong\n"), "{wrong}");

    // Answers: the result and the history show the plain parameters and hide the secret.
    let history = s.get(&format!("{}/commandResults", cluster_path("rg", "c1"))).await;
    assert!(!history.text.contains(&unique) && !wrong.to_string().contains(&unique));
    let entry = &history.json()["value"][0]["properties"];
    assert_eq!(entry["savedCommand"], saved_path("echo"));
    assert_eq!(entry["parameters"], json!({"text": "t", "level": "info", "lines": "10", "token": "(secret)"}));
    let logs = s.get(&format!("{}/logs", locations[1].split('?').next().unwrap().replace(&s.base, ""))).await;
    assert!(!logs.text.contains(&unique));
    // The store: every row of every table, on either backend; and the server's log.
    if let Some(url) = s.store_url() {
        let client = postgres_client(url).await;
        let tables = client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap();
        for table in tables {
            let name: String = table.get(0);
            let sql = format!("SELECT COUNT(*) FROM {name} t WHERE strpos(t::text, $1) > 0");
            let found: i64 = client.query_one(&sql, &[&unique]).await.unwrap().get(0);
            assert_eq!(found, 0, "the secret is in table {name}");
        }
    } else {
        let files = std::fs::read_dir(s.data_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("kubeinvoke.db"));
        for file in files {
            let bytes = std::fs::read(file.path()).unwrap();
            assert!(!bytes.windows(unique.len()).any(|w| w == unique.as_bytes()), "the secret is in {:?}", file.path());
        }
    }
    assert!(!s.server_log().contains(&unique), "the secret is in the server log");
}

#[tokio::test]
async fn a_secret_held_by_a_server_that_restarts_is_never_run_without_it() {
    // One command at a time: the saved command waits behind a long one, then the server dies.
    let s = Server::start(&["--max-running", "1"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    put_echo(&s).await;
    let blocker = s.submit("rg", "c1", json!({"command": "sleep 30"})).await;
    s.wait_for_state(&blocker, "Running").await;
    let body =
        json!({"savedCommand": saved_path("echo"), "parameters": {"text": "t", "level": "info", "token": "the token"}});
    let r = run_saved(&s, "c1", body).await;
    let queued = r.header("location").unwrap().to_string();
    let path = queued[queued.find("/subscriptions/").unwrap()..].to_string();
    let s = s.restart().await;
    let result = s.wait(&path).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert!(result["properties"]["reason"].as_str().unwrap().starts_with("SecretsLost"), "{result}");
}

#[tokio::test]
async fn disable_run_command_stops_free_form_commands_but_not_saved_ones() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "locked", json!({"apiServerAccessProfile": {"disableRunCommand": true}})).await;
    put_echo(&s).await;
    s.post(&format!("{}/runCommand", cluster_path("rg", "locked")), json!({"command": "id"}))
        .await
        .assert_error(400, "RunCommandDisabled");
    let body =
        json!({"savedCommand": saved_path("echo"), "parameters": {"text": "t", "level": "info", "token": "the token"}});
    let r = run_saved(&s, "locked", body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait(r.header("location").unwrap()).await["properties"]["exitCode"], 0);
    // A saved command of a group runs only on that group's clusters.
    s.create_cluster("other", "o1", json!({})).await;
    let in_group =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/savedCommands/g");
    assert_eq!(s.put(&in_group, json!({"properties": {"script": "true"}})).await.status, 201);
    let r =
        s.post(&format!("{}/runSavedCommand", cluster_path("other", "o1")), json!({"savedCommand": in_group})).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("does not contain this cluster"));
}

#[tokio::test]
async fn timeout_in_seconds_lowers_but_never_raises_the_limit() {
    let s = Server::start(&["--command-timeout", "3s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let run = |body: Value| {
        let s = &s;
        async move {
            let started = std::time::Instant::now();
            let location = s.submit("rg", "c1", body).await;
            let result = s.wait(&location).await;
            (result, started.elapsed())
        }
    };
    let (lowered, took) = run(json!({"command": "sleep 20", "timeoutInSeconds": 1})).await;
    assert_eq!(
        (lowered["properties"]["provisioningState"].as_str(), lowered["properties"]["reason"].as_str()),
        (Some("Failed"), Some("Timeout"))
    );
    assert!(took < Duration::from_millis(2900), "the 1 s request timeout applied, not the server's 3 s: {took:?}");
    let (raised, took) = run(json!({"command": "sleep 20", "timeoutInSeconds": 600})).await;
    assert_eq!(raised["properties"]["reason"], "Timeout");
    assert!(took < Duration::from_secs(10), "600 s did not raise the server's 3 s: {took:?}");
    let (fine, _) = run(json!({"command": "sleep 0.2; echo ok", "timeoutInSeconds": 2})).await;
    assert_eq!(fine["properties"]["logs"], "ok\n");
    for bad in [json!(0), json!(-1), json!("5"), json!(90000)] {
        let r = s
            .post(
                &format!("{}/runCommand", cluster_path("rg", "c1")),
                json!({"command": "true", "timeoutInSeconds": bad}),
            )
            .await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], "timeoutInSeconds");
    }
    // A saved command's own timeout, and a request's, take the lower of the two.
    let body = json!({"properties": {"script": "sleep 20", "timeoutInSeconds": 1}});
    assert_eq!(s.put(&saved_path("slow"), body).await.status, 201);
    let r = run_saved(&s, "c1", json!({"savedCommand": saved_path("slow"), "timeoutInSeconds": 100})).await;
    let result = s.wait(r.header("location").unwrap()).await;
    assert_eq!(result["properties"]["reason"], "Timeout");
}

#[tokio::test]
async fn saved_commands_are_resources_with_clear_errors() {
    let s = Server::start(&[]).await;
    let path = saved_path("diag");
    let bad = [
        (json!({}), "properties"),
        (json!({"properties": {}}), "properties.script"),
        (
            json!({"properties": {"script": "x", "parameters": {"Bad-Name": {"type": "string"}}}}),
            "properties.parameters.Bad-Name",
        ),
        (
            json!({"properties": {"script": "x", "parameters": {"ns": {"type": "string", "pattern": "(["}}}}),
            "properties.parameters.ns.pattern",
        ),
        (
            json!({"properties": {"script": "x", "parameters": {"t": {"type": "secret", "default": "s"}}}}),
            "properties.parameters.t.default",
        ),
        (json!({"properties": {"script": "x", "timeoutInSeconds": "5"}}), "properties.timeoutInSeconds"),
        (json!({"properties": {"script": "x", "context": "not base64!"}}), "properties.context"),
    ];
    for (body, target) in bad {
        let r = s.put(&path, body).await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], target, "{}", r.text);
    }
    let r = s.put(&path, json!({"properties": {"script": "echo one", "description": "d"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["id"], path);
    assert_eq!(r.json()["type"], "Microsoft.ContainerService/savedCommands");
    let r = s.put(&path.replace("/diag", "/DIAG"), json!({"properties": {"script": "echo two"}})).await;
    assert_eq!(r.status, 200, "a replace keeps the first spelling: {}", r.text);
    assert_eq!(r.json()["name"], "diag");
    let listed = s.get(&format!("{}/providers/Microsoft.ContainerService/savedCommands", sub_scope())).await.json();
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    assert_eq!(listed["value"][0]["properties"]["script"], "echo two");
    assert_eq!(s.send(Method::DELETE, &path, None).await.status, 200);
    s.get(&path).await.assert_error(404, "SavedCommandNotFound");
    assert_eq!(s.send(Method::DELETE, &path, None).await.status, 204);
    let missing_group =
        format!("/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.ContainerService/savedCommands/x");
    s.put(&missing_group, json!({"properties": {"script": "x"}})).await.assert_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn custom_roles_authorize_like_built_in_ones() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.create_cluster("rg2", "c2", json!({})).await;
    put_echo(&s).await;
    let role_id = uuid::Uuid::new_v4().to_string();
    let definition =
        format!("{}/providers/Microsoft.Authorization/roleDefinitions/{role_id}?api-version=2022-04-01", sub_scope());
    let role = json!({"properties": {
        "roleName": "Saved runner", "type": "CustomRole",
        "assignableScopes": [format!("/subscriptions/{SUB}/resourceGroups/rg")],
        "permissions": [{"actions": ["Microsoft.ContainerService/managedClusters/runSavedCommand/action", "Microsoft.ContainerService/*/read"],
                         "notActions": ["Microsoft.ContainerService/managedClusters/commandResults/read"]}]
    }});
    // The URL's scope must be an assignable scope.
    let r = s.put(&definition, role.clone()).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("must be one of the role's assignableScopes"));
    let definition = definition.replace(&sub_scope(), &format!("/subscriptions/{SUB}/resourceGroups/rg"));
    let r = s.put(&definition, role.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["properties"]["type"], "CustomRole");
    let listed = s.get(&format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=roleName%20eq%20'Saved%20runner'")).await.json();
    assert_eq!(listed["value"][0]["name"], role_id.as_str(), "{listed}");

    let runner = s.create_principal("runner", None);
    let token = s.token_for(&runner, "https://management.azure.com/.default").await;
    let oid = claims_of(&token)["oid"].as_str().unwrap().to_string();
    let grant = |scope: String| {
        let body = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"), "principalId": oid, "principalType": "ServicePrincipal"}});
        let path = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
            uuid::Uuid::new_v4()
        );
        let s = &s;
        async move { s.put(&path, body).await }
    };
    // Not assignable above its scopes.
    grant(sub_scope()).await.assert_error(403, "InvalidCreateRoleAssignmentRequest");
    assert_eq!(grant(format!("/subscriptions/{SUB}/resourceGroups/rg")).await.status, 201);

    let as_runner = |method: Method, path: String, body: Option<Value>| {
        let s = &s;
        let token = token.clone();
        async move { send_as(s, &token, method, &path, body).await }
    };
    let body =
        json!({"savedCommand": saved_path("echo"), "parameters": {"text": "t", "level": "info", "token": "the token"}});
    let r = as_runner(Method::POST, format!("{}/runSavedCommand", cluster_path("rg", "c1")), Some(body.clone())).await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Its wildcard read works, its notActions removes result reads, its scope keeps it in rg.
    assert_eq!(as_runner(Method::GET, cluster_path("rg", "c1"), None).await.status, 200);
    as_runner(Method::GET, r.header("location").unwrap().to_string(), None)
        .await
        .assert_error(403, "AuthorizationFailed");
    as_runner(Method::POST, format!("{}/runSavedCommand", cluster_path("rg2", "c2")), Some(body))
        .await
        .assert_error(403, "AuthorizationFailed");
    let m = as_runner(Method::POST, format!("{}/runCommand", cluster_path("rg", "c1")), Some(json!({"command": "id"})))
        .await
        .assert_error(403, "AuthorizationFailed");
    assert!(m.contains("runcommand/action"), "{m}");

    // A role in use cannot be deleted; bad definitions name the property.
    s.send(Method::DELETE, &definition, None).await.assert_error(409, "RoleDefinitionHasAssignments");
    let other = definition.replace(&role_id, &uuid::Uuid::new_v4().to_string());
    s.put(&other, role).await.assert_error(409, "RoleDefinitionWithSameNameExists");
    let r = s.put(&other, json!({"properties": {"roleName": "x", "assignableScopes": ["/subscriptions/nope"], "permissions": [{"actions": ["*/read"]}]}})).await;
    assert_eq!(r.json()["error"]["target"], "properties.assignableScopes", "{}", r.text);
}

#[tokio::test]
async fn secret_values_are_masked_in_the_output_even_split_across_writes() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    // Prints the secret whole, then in two writes with a pause between (two reads of the pipe),
    // then beside plain text; the plain parameter is shown as it is.
    let script = r#"echo "whole: $token"; printf 'split: %s' "${token:0:5}"; sleep 0.3; printf '%s|\n' "${token:5}"; echo "plain: $text""#;
    let body = json!({"properties": {"script": script,
        "parameters": {"token": {"type": "secret"}, "text": {"type": "string"}}}});
    assert_eq!(s.put(&saved_path("leaky"), body).await.status, 201);
    let secret = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let body = json!({"savedCommand": saved_path("leaky"), "parameters": {"token": secret, "text": "visible"}});
    let r = run_saved(&s, "c1", body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let result = s.wait(&location).await;
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert_eq!(logs, "whole: ***\nsplit: ***|\nplain: visible\n", "{result}");
    // The stored full output (live logs) is masked the same way.
    let live = s.get(&format!("{}/logs", location.split('?').next().unwrap().replace(&s.base, ""))).await;
    assert_eq!(live.text, logs);
    assert!(!s.server_log().contains(&secret), "the secret is in the server log");
}

#[tokio::test]
async fn run_as_is_checked_at_put_and_refused_where_it_cannot_hold() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.create_cluster("rg", "aad", json!({"aadProfile": {"managed": true}})).await;
    for (run_as, names) in [
        (json!({"user": "system:admin"}), "system:"),
        (json!({"user": "jane", "groups": ["system:masters"]}), "system:"),
        (json!({"serviceAccount": "../../etc"}), "DNS label"),
        (json!({"user": "jane", "serviceAccount": "x"}), "exactly one"),
        (json!({"user": "jane\nx"}), "'user'"),
    ] {
        let r = s.put(&saved_path("bad"), json!({"properties": {"script": "id", "runAs": run_as}})).await;
        assert!(r.assert_error(400, "InvalidParameter").contains(names), "{}", r.text);
        assert_eq!(r.json()["error"]["target"], "properties.runAs");
    }
    // A service account needs the Pod executor: on a local cluster the command fails saying so.
    let r = s
        .put(
            &saved_path("as-account"),
            json!({"properties": {"script": "id", "runAs": {"serviceAccount": "deployer"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let shown = s.get(&saved_path("as-account")).await.json();
    assert_eq!(shown["properties"]["runAs"], json!({"serviceAccount": "deployer"}));
    let r = run_saved(&s, "c1", json!({"savedCommand": saved_path("as-account")})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = s.wait(r.header("location").unwrap()).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert!(result["properties"]["reason"].as_str().unwrap().contains("Pod executor"), "{result}");
    let history = s.get(&format!("{}/commandResults", cluster_path("rg", "c1"))).await.json();
    assert_eq!(history["value"][0]["properties"]["runAs"], "serviceAccount deployer", "{history}");
    // On an AAD-managed cluster commands act as their caller: runAs is refused there.
    let body = json!({"savedCommand": saved_path("as-account"), "clusterToken": "x"});
    let r = run_saved(&s, "aad", body).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("AAD-managed"), "{}", r.text);
}
