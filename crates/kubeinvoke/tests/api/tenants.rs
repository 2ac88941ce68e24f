//! Attacks by tenants with partial access (issue #28): a Contributor on one group, an Owner of one
//! group, a Cluster User. Each writes something hostile into a document it may write — a
//! kubeconfig, a role, a saved command, a webhook URL — and tries to make the server act on it
//! beyond its role. Each test asserts that the attempt fails, and that nothing of it reached the
//! server's files, programs or network: a marker file that never appears, a recorder on loopback
//! that never sees a secret.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A FAKE HTTP endpoint, not a Kubernetes API server: it records every request that reaches it
/// (head and body) and answers each with one fixed response. It stands for "an address a tenant
/// wrote down": what arrives here is what the server sent on a tenant's word.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(status: u16, content_type: &str, body: &str) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let response = format!(
            "HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (record, response) = (record.clone(), response.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&chunk[..n]),
                            }
                        }
                    })
                    .await;
                    record.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Recorder { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kubeconfig for `server` whose one user is `user` (YAML flow mapping).
fn kubeconfig(server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: \"{server}\"}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {user}\n"
    )
}

/// A marker path no test creates: a kubeconfig's exec plugin would `touch` it.
fn marker(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kubeinvoke-{name}-{}", uuid::Uuid::new_v4()))
}

/// Replaces a stored cluster's kubeconfig behind the API, as a document stored before the
/// allow-list existed would be.
async fn store_kubeconfig(s: &Server, cluster: &str, document: &str) {
    let hex: String = document.bytes().map(|b| format!("{b:02x}")).collect();
    let literal = if on_postgres() { format!("'\\x{hex}'::bytea") } else { format!("X'{hex}'") };
    s.execute(&format!("UPDATE clusters SET kubeconfig = {literal} WHERE name = '{cluster}'")).await;
}

fn reason(result: &Value) -> String {
    result["properties"]["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_kubeconfig_that_would_run_a_program_or_read_a_file_is_refused_for_the_pod_executor() {
    let recorder = Recorder::start(200, "application/json", "{}").await;
    let s = Server::start(&[]).await;
    s.create_group("rg").await;
    let planted = marker("exec");
    let exec = format!(
        "{{exec: {{apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/sh, args: [-c, 'touch {}']}}}}",
        planted.display()
    );
    let hostile = [
        (exec.clone(), "users[0].user.exec"),
        ("{tokenFile: /etc/shadow}".to_string(), "users[0].user.tokenFile"),
        (
            "{client-certificate: /etc/ssl/private/x.pem, client-key: /etc/ssl/private/x.key}".to_string(),
            "users[0].user.client-certificate",
        ),
        ("{auth-provider: {name: oidc}}".to_string(), "users[0].user.auth-provider"),
    ];
    for (user, field) in &hostile {
        // The default executor is local: the cluster itself asks for Pods.
        let body = json!({"location": "westeurope", "properties": {
            "commandExecutor": "kubernetes", "kubeconfig": encode(&kubeconfig(&recorder.url, user))}});
        let r = s.put(&cluster_path("rg", "evil"), body).await;
        let message = r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], "properties.kubeconfig", "{}", r.text);
        assert!(message.contains(field), "{field}: {message}");
    }
    // The same kubeconfig is the command's own business on the local executor (kubectl runs the
    // plugin in the sandbox), so it is accepted there; moving that cluster to Pods is refused.
    let local =
        json!({"location": "westeurope", "properties": {"kubeconfig": encode(&kubeconfig(&recorder.url, &exec))}});
    assert_eq!(s.put(&cluster_path("rg", "local"), local).await.status, 201);
    let r = s
        .put(
            &cluster_path("rg", "local"),
            json!({"location": "westeurope", "properties": {"commandExecutor": "kubernetes"}}),
        )
        .await;
    assert!(r.assert_error(400, "InvalidParameter").contains("users[0].user.exec"), "{}", r.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!planted.exists(), "the exec plugin ran on the server");
    assert!(recorder.requests().is_empty(), "the server contacted the tenant's address: {:?}", recorder.requests());
}

#[tokio::test]
async fn a_stored_kubeconfig_is_checked_again_at_use_and_its_command_fails_naming_the_field() {
    let recorder = Recorder::start(200, "application/json", "{}").await;
    let s = Server::start(&["--executor", "kubernetes"]).await;
    let safe = kubeconfig(&recorder.url, "{token: harmless}");
    s.create_cluster("rg", "c1", json!({"kubeconfig": encode(&safe)})).await;
    // Written before the check existed (or edited in the database): an exec plugin, then a
    // token that cannot be a header value (it made the HTTP client panic).
    let planted = marker("exec-at-use");
    let exec = format!(
        "{{exec: {{apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/sh, args: [-c, 'touch {}']}}}}",
        planted.display()
    );
    for (user, field) in [(exec, "users[0].user.exec"), ("{token: \"abc\\ndef\"}".to_string(), "users[0].user.token")] {
        store_kubeconfig(&s, "c1", &kubeconfig(&recorder.url, &user)).await;
        let started = Instant::now();
        let location = s.submit("rg", "c1", json!({"command": "echo hi"})).await;
        let result = s.wait(&location).await;
        assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
        assert!(reason(&result).contains(field) && reason(&result).contains("InvalidClusterSetting"), "{result}");
        assert!(started.elapsed() < Duration::from_secs(20), "the command must end at once");
    }
    // The worker was given back: the next command runs.
    s.create_cluster("rg", "c2", json!({"commandExecutor": "local"})).await;
    let location = s.submit("rg", "c2", json!({"command": "echo still-working"})).await;
    assert_eq!(s.wait(&location).await["properties"]["logs"], "still-working\n");
    assert!(!planted.exists(), "the exec plugin ran on the server");
    let leaked: Vec<String> = recorder.requests().into_iter().filter(|r| r.contains("abc")).collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test]
async fn tokens_and_certificates_that_cannot_be_sent_are_refused_at_put_on_every_executor() {
    let s = Server::start(&[]).await;
    s.create_group("rg").await;
    for executor in ["local", "kubernetes"] {
        for (user, field) in [
            ("{token: \"abc\\nX-Injected: yes\"}", "users[0].user.token"),
            ("{token: \"with space\"}", "users[0].user.token"),
            (
                "{client-certificate-data: bm90LWEtY2VydA==, client-key-data: bm90LWEta2V5}",
                "users[0].user.client-certificate-data",
            ),
        ] {
            let body = json!({"location": "westeurope", "properties": {
                "commandExecutor": executor, "kubeconfig": encode(&kubeconfig("https://203.0.113.5:6443", user))}});
            let r = s.put(&cluster_path("rg", "bad"), body).await;
            assert!(r.assert_error(400, "InvalidParameter").contains(field), "{executor} {user}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn an_internal_services_answer_never_reaches_the_result() {
    // A tenant points its cluster at an internal service that answers with a page of secrets.
    let internal = Recorder::start(500, "text/html", "<html>db-password=hunter2 INTERNAL-SECRET</html>").await;
    let s = Server::start(&["--executor", "kubernetes"]).await;
    s.create_cluster("rg", "ssrf", json!({"kubeconfig": encode(&kubeconfig(&internal.url, "{token: t0ken}"))})).await;
    let location = s.submit("rg", "ssrf", json!({"command": "true"})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    let text = result.to_string();
    assert!(!text.contains("hunter2") && !text.contains("INTERNAL-SECRET"), "{text}");
    assert!(reason(&result).contains("HTTP 500") && reason(&result).contains("not shown"), "{result}");
    assert!(!internal.requests().is_empty(), "the server did call the cluster's address");
}

#[tokio::test]
async fn a_group_owner_cannot_hijack_a_role_assigned_at_the_subscription() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let subscription = format!("/subscriptions/{SUB}");
    let group = format!("{subscription}/resourceGroups/rg");
    // A narrow custom role, assignable and assigned at the subscription.
    let role_id = uuid::Uuid::new_v4().to_string();
    let at = |scope: &str| {
        format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/{role_id}?api-version=2022-04-01")
    };
    let narrow = json!({"properties": {"roleName": "Readers of clusters", "type": "CustomRole",
        "assignableScopes": [subscription], "permissions": [{"actions": ["Microsoft.ContainerService/managedClusters/read"]}]}});
    assert_eq!(s.put(&at(&subscription), narrow).await.status, 201);
    let owner = s.create_principal("group-owner", Some(("Owner", &group)));
    let owner_token = s.token_for(&owner, "https://management.azure.com/.default").await;
    let owner_oid = claims_of(&owner_token)["oid"].as_str().unwrap().to_string();
    let assignment = format!(
        "{subscription}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid::Uuid::new_v4()
    );
    let grant = json!({"properties": {"roleDefinitionId": format!("{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"), "principalId": owner_oid, "principalType": "ServicePrincipal"}});
    assert_eq!(s.put(&assignment, grant).await.status, 201);

    // The group's Owner rewrites that GUID as a role of its own group, granting everything.
    let wide = json!({"properties": {"roleName": "Readers of clusters", "type": "CustomRole",
        "assignableScopes": [group], "permissions": [{"actions": ["*"]}]}});
    let r = send_as(&s, &owner_token, Method::PUT, &at(&group), Some(wide)).await;
    r.assert_error(403, "AuthorizationFailed");
    send_as(&s, &owner_token, Method::GET, &at(&group), None).await.assert_error(403, "AuthorizationFailed");
    send_as(&s, &owner_token, Method::DELETE, &at(&group), None).await.assert_error(403, "AuthorizationFailed");
    // Nothing changed: the role is as the subscription's Owner wrote it, and grants no more.
    let stored = s.get(&at(&subscription)).await.json();
    assert_eq!(
        stored["properties"]["permissions"][0]["actions"],
        json!(["Microsoft.ContainerService/managedClusters/read"]),
        "{stored}"
    );
    s.create_cluster("rg2", "other", json!({})).await;
    let run = format!("{}/runCommand", cluster_path("rg2", "other"));
    send_as(&s, &owner_token, Method::POST, &run, Some(json!({"command": "id"})))
        .await
        .assert_error(403, "AuthorizationFailed");
    // Within its own group it still manages its own roles.
    let own_id = uuid::Uuid::new_v4().to_string();
    let own = format!("{group}/providers/Microsoft.Authorization/roleDefinitions/{own_id}?api-version=2022-04-01");
    let mine = json!({"properties": {"roleName": "Mine", "type": "CustomRole", "assignableScopes": [group], "permissions": [{"actions": ["*"]}]}});
    assert_eq!(send_as(&s, &owner_token, Method::PUT, &own, Some(mine)).await.status, 201);
    assert_eq!(send_as(&s, &owner_token, Method::GET, &own, None).await.status, 200);
}

#[tokio::test]
async fn a_cluster_user_gets_no_static_secret_of_an_aad_cluster() {
    let s = Server::start(&[]).await;
    let admin_secret = "static-admin-secret-0123456789";
    let config = kubeconfig("https://aks.example:443", &format!("{{token: {admin_secret}}}"));
    s.create_cluster("rg", "aad", json!({"aadProfile": {"managed": true}, "kubeconfig": encode(&config)})).await;
    let user = s.create_principal(
        "cluster-user",
        Some(("Azure Kubernetes Service Cluster User Role", &cluster_path("rg", "aad"))),
    );
    let token = s.token_for(&user, "https://management.azure.com/.default").await;
    let list = |action: &str| format!("{}/{action}?api-version=2024-09-01", cluster_path("rg", "aad"));
    let r = send_as(&s, &token, Method::POST, &list("listClusterUserCredential"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let value = r.json()["kubeconfigs"][0]["value"].as_str().unwrap().to_string();
    let document = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value).unwrap()).unwrap();
    assert!(!document.contains(admin_secret), "{document}");
    assert!(document.contains("kubelogin") && document.contains("6dae42f8-4368-4678-94ff-3960e28e3630"), "{document}");
    assert!(document.contains("https://aks.example:443"), "the cluster is kept: {document}");
    // The admin credential needs the admin's right.
    send_as(&s, &token, Method::POST, &list("listClusterAdminCredential"), None)
        .await
        .assert_error(403, "AuthorizationFailed");
}

#[tokio::test]
async fn a_captured_cluster_token_cannot_be_replayed_and_a_fan_out_gives_it_only_to_aad_clusters() {
    let s = Server::start(&[]).await;
    let aad_app = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";
    let (_, config) = kubeconfig_for("https://203.0.113.10:6443");
    s.create_cluster("rg", "aad", json!({"aadProfile": {"managed": true}, "kubeconfig": config})).await;
    let victim_token = s.token_for(&s.admin().unwrap(), aad_app).await;
    // Another runner replays the victim's token as its own.
    let attacker = s.create_principal("replayer", Some(("Contributor", &format!("/subscriptions/{SUB}"))));
    let attacker_arm = s.token_for(&attacker, "https://management.azure.com/.default").await;
    let run = format!("{}/runCommand", cluster_path("rg", "aad"));
    let r =
        send_as(&s, &attacker_arm, Method::POST, &run, Some(json!({"command": "true", "clusterToken": victim_token})))
            .await;
    assert!(r.assert_error(400, "InvalidParameter").contains("another principal"), "{}", r.text);
    assert_eq!(r.json()["error"]["target"], "clusterToken");

    // The attacker registers a non-AAD cluster under the victim's tag; the victim fans out with
    // its own token. Each target prints how often the token is in its kubeconfig.
    for (name, aad) in [("aad", true), ("trap", false)] {
        let mut properties = json!({"kubeconfig": config});
        if aad {
            properties["aadProfile"] = json!({"managed": true});
        }
        let body = json!({"location": "westeurope", "tags": {"team": "victims"}, "properties": properties});
        assert!(s.put(&cluster_path("rg", name), body).await.status.is_success());
    }
    let fragment = &victim_token[victim_token.len() - 20..];
    let command = format!("grep -c -- '{fragment}' \"$KUBECONFIG\" || true");
    let body = json!({"command": command, "clusterToken": victim_token, "targets": {"tags": {"team": "victims"}}});
    let r = s.post(&format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/runCommand"), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let r = s.get(&location).await;
        if r.status == 200 {
            break r.json();
        }
        assert!(Instant::now() < deadline, "the run never ended: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let targets = run["properties"]["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{run}");
    for target in targets {
        let name = target["clusterId"].as_str().unwrap().rsplit('/').next().unwrap();
        let result = s.get(&result_path("rg", name, target["commandId"].as_str().unwrap())).await.json();
        let expected = if name == "aad" { "1" } else { "0" };
        assert_eq!(result["properties"]["logs"].as_str().unwrap().trim(), expected, "{name}: {result}");
    }
}

#[tokio::test]
async fn a_hostile_saved_command_is_refused_at_once_and_costs_no_memory() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/savedCommands/hostile?api-version=2024-09-01"
    );
    let many: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("p{i}"), json!({"type": "string", "pattern": "\\w{20}"}))).collect();
    let started = Instant::now();
    let r = s.put(&path, json!({"properties": {"script": "true", "parameters": many}})).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("at most 64 parameters"), "{}", r.text);
    let long = "a".repeat(600);
    let r = s
        .put(&path, json!({"properties": {"script": "true", "parameters": {"p": {"type": "string", "pattern": long}}}}))
        .await;
    assert!(r.assert_error(400, "InvalidParameter").contains("at most 512"), "{}", r.text);
    assert_eq!(r.json()["error"]["target"], "properties.parameters.p.pattern");
    // Within the limits, the heaviest patterns compile to bounded programs or are refused.
    let heavy: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("p{i}"), json!({"type": "string", "pattern": "(\\w{20}){20}"}))).collect();
    let r = s.put(&path, json!({"properties": {"script": "true", "parameters": heavy}})).await;
    r.assert_error(400, "InvalidParameter");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let health = s.client.get(s.url("/healthz")).timeout(Duration::from_secs(2)).send().await.unwrap();
    assert!(health.status().is_success());
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(peak_kb < 300 * 1024, "the server's peak memory grew to {peak_kb} kB");
}

#[tokio::test]
async fn audit_verify_names_an_event_whose_filter_columns_were_edited() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.run("echo one").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.count("SELECT COUNT(*) FROM activity_log").await < 4 {
        assert!(Instant::now() < deadline, "events never logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kubeinvoke"));
        command.args(["audit", "verify", "--data-dir"]).arg(s.data_dir());
        if let Some(url) = s.store_url() {
            command.args(["--store", url]);
        }
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(verify().0, Some(0), "{}", verify().1);
    for (column, edit) in [
        ("caller", "caller = 'someone-else'"),
        ("status", "status = 'Failed'"),
        ("resource_key", "resource_key = '/subscriptions/x'"),
        ("event_time", "event_time = event_time + 1"),
    ] {
        s.execute("CREATE TABLE saved_row AS SELECT * FROM activity_log WHERE seq = 2").await;
        s.execute(&format!("UPDATE activity_log SET {edit} WHERE seq = 2")).await;
        let (code, out) = verify();
        assert_eq!(code, Some(1), "{column}: {out}");
        assert!(out.contains("event 2 (") && out.contains(column), "{column}: {out}");
        s.execute(
            "UPDATE activity_log SET caller = (SELECT caller FROM saved_row), status = (SELECT status FROM saved_row), \
             resource_key = (SELECT resource_key FROM saved_row), event_time = (SELECT event_time FROM saved_row) WHERE seq = 2; \
             DROP TABLE saved_row",
        )
        .await;
        assert_eq!(verify().0, Some(0), "restored after {column}");
    }
}

#[tokio::test]
async fn webhooks_never_reach_the_servers_own_network_and_failures_say_nothing_of_the_port() {
    let s = Server::start(&[]).await;
    let path =
        format!("/subscriptions/{SUB}/providers/Microsoft.EventGrid/eventSubscriptions/probe?api-version=2022-06-15");
    let body = |url: &str| json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}}, "eventDeliverySchema": "CloudEventSchemaV1_0"}});
    for url in [
        "https://127.0.0.1:9/hook",
        "https://[::1]:9/hook",
        "https://[::ffff:127.0.0.1]:9/hook",
        "https://2130706433/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "https://0.0.0.0:8443/hook",
        "http://127.0.0.1:9\\@hooks.example/hook",
        "https://user:pw@hooks.example/hook",
    ] {
        let r = s.put(&path, body(url)).await;
        r.assert_error(400, "InvalidParameter");
        assert_eq!(r.json()["error"]["target"], "properties.destination.properties.endpointUrl", "{url}: {}", r.text);
    }
    // A name is judged by the address it resolves to, at connection time.
    let r = s.put(&path, body("https://localhost:9/hook")).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("public addresses"), "{}", r.text);

    // Allowed to reach private networks, the server still tells nobody what is behind a port:
    // closed, plain TCP and plain HTTP all fail the same way.
    let s = Server::start(&["--event-allow-private-networks"]).await;
    let closed = kubeinvoke_testkit::ports::free_port();
    let plain_http = Recorder::start(200, "text/plain", "hello").await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(socket);
            });
        }
    });
    let http_port = plain_http.url.rsplit(':').next().unwrap().to_string();
    let mut messages = Vec::new();
    for port in [closed.to_string(), http_port, silent_port.to_string()] {
        let r = s.put(&path, body(&format!("https://127.0.0.1:{port}/hook"))).await;
        let message = r.assert_error(400, "InvalidParameter");
        messages.push(message.replace(&port, "PORT"));
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "the failures differ: {messages:#?}");
}
