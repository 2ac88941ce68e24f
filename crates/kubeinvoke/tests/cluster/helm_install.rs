//! The chart for real: kubeinvoke's own image built here (`scripts/server-image.sh`), installed
//! with `helm install` on the real node against a PostgreSQL this test serves on the node's link;
//! its Pods become Ready through their probes, a command submitted through the Service runs as a
//! Pod of the Pod executor on the same cluster, and `helm uninstall` leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::dev_cluster::DevCluster;
use crate::harness::{cluster_path, group_path};
use crate::private_postgres::PrivatePostgres;

const RELEASE: &str = "chart";
const NAMESPACE: &str = "chart-system";
const COMMANDS: &str = "chart-commands";
/// This host's end of the real node's link (`scripts/lib/real-node.sh`), which Pods reach.
const LINK_ADDRESS: &str = "10.200.0.1";
/// The real node's Pod network.
const POD_NETWORK: &str = "10.244.0.0/24";
const NODE_SELECTOR: &str = r#"{"kubeinvoke.io/real-node": "true"}"#;
const NODE_TOLERATIONS: &str = r#"[{"key": "kubeinvoke.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]"#;

/// `kubectl port-forward service/<release>`: the address on this host that reaches the Service.
struct Forward(Child, u16, PathBuf);

impl Forward {
    fn to_service(cluster: &DevCluster, work: &Path) -> Forward {
        let log = work.join("port-forward.log");
        use std::io::BufRead;
        let mut child = Command::new(cluster.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["port-forward", "-n", NAMESPACE, &format!("service/{RELEASE}"), ":443"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // kubectl keeps writing ("Handling connection for …"): read it for the forward's whole
        // life, or its next write meets a closed pipe and it dies.
        let stdout = child.stdout.take().unwrap();
        let (first, line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for text in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = first.send(text);
            }
        });
        let line = line.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        // "Forwarding from 127.0.0.1:40123 -> 8443"
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("port-forward printed {line:?}"));
        Forward(child, port, log)
    }

    /// What kubectl reported while forwarding.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.2).unwrap_or_default()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn helm(cluster: &DevCluster, args: &[&str]) -> String {
    let out = Command::new(cluster.bin.join("helm"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        release_pods(cluster)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the release's Pods say about themselves: their events and the last lines of their logs.
fn release_pods(cluster: &DevCluster) -> String {
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let text = |out: std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let described = text(cluster.kubectl(&["describe", "pods", "-n", NAMESPACE, "-l", &selector]));
    let logs = text(cluster.kubectl(&["logs", "-n", NAMESPACE, "-l", &selector, "--tail", "20", "--prefix"]));
    let previous =
        text(cluster.kubectl(&["logs", "-n", NAMESPACE, "-l", &selector, "--tail", "20", "--prefix", "--previous"]));
    format!("{described}\n--- logs\n{logs}\n--- previous logs\n{previous}")
}

/// kubeinvoke's server image from the binary under test, imported into the real node.
fn server_image(work: &Path) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/server-image.sh"))
        .arg("--import")
        .arg(env!("CARGO_BIN_EXE_kubeinvoke"))
        .arg(work)
        .output()
        .unwrap();
    assert!(out.status.success(), "server-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SERVER_IMAGE="))
        .expect("server-image.sh prints SERVER_IMAGE=<ref>")
        .to_string()
}

/// The objects of the release still in the cluster: everything labelled with its instance, in
/// every namespace, and the commands' namespace.
fn left_behind(cluster: &DevCluster) -> String {
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let kinds = "deployments,replicasets,pods,services,secrets,serviceaccounts,roles,rolebindings,\
                 poddisruptionbudgets,clusterroles,clusterrolebindings,namespaces";
    let labelled = cluster.kubectl_ok(&["get", kinds, "-A", "-l", &selector, "-o", "name"]);
    let commands = cluster.kubectl_ok(&["get", "pods,secrets", "-n", COMMANDS, "-o", "name", "--ignore-not-found"]);
    format!("{labelled}{commands}")
}

/// An HTTPS client for the Service's name, trusting the chart's CA, connecting to `port` here.
fn client_for_service(ca_pem: &[u8], host: &str, port: u16) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap()
}

/// Sends `request` through the forward; a failure names what kubectl reported.
async fn send_raw(forward: &Forward, request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap_or_else(|e| panic!("{e:?}\nkubectl port-forward: {}", forward.log()))
}

/// [`send_raw`], its status and JSON body.
async fn send(forward: &Forward, request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = send_raw(forward, request).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn the_chart_installs_on_the_real_node_runs_a_command_as_a_pod_and_uninstalls_cleanly() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // A database on the node's link, as a cluster's network would offer one.
    // A free port of that address (a fixed one could still be held by a crashed run's server).
    let port = std::net::TcpListener::bind((LINK_ADDRESS, 0)).unwrap().local_addr().unwrap().port();
    let postgres = PrivatePostgres::start_on(LINK_ADDRESS, port, "chart-db-secret", &[POD_NETWORK]);
    let store_url = postgres.create_database("kubeinvoke").await;
    let image = server_image(work.path());
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/chart/kubeinvoke");
    let values = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "replicas=2".into(),
        "podDisruptionBudget.minAvailable=1".into(),
        format!("store.url={store_url}"),
        format!("commands.namespace={COMMANDS}"),
        format!("commands.image={}", cluster.command_image),
        "resources.requests.cpu=50m".into(),
    ];
    let json_values = [
        format!("nodeSelector={NODE_SELECTOR}"),
        format!("tolerations={NODE_TOLERATIONS}"),
        format!("commands.nodeSelector={NODE_SELECTOR}"),
        format!("commands.tolerations={NODE_TOLERATIONS}"),
    ];
    let mut install = vec!["install", RELEASE, chart.to_str().unwrap(), "-n", NAMESPACE, "--create-namespace"];
    for value in &values {
        install.extend(["--set", value]);
    }
    for value in &json_values {
        install.extend(["--set-json", value]);
    }
    install.extend(["--wait", "--timeout", "4m"]);
    helm(cluster, &install);

    // Ready through the probes: both replicas (helm waits for all but `maxUnavailable`), on the real node.
    cluster.eventually("both replicas Ready", Duration::from_secs(120), || {
        let ready = cluster.kubectl_ok(&[
            "get",
            "deployment",
            RELEASE,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        ready.trim() == "2"
    });
    let nodes = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert_eq!(nodes.split_whitespace().collect::<Vec<_>>(), ["kubeinvoke-node", "kubeinvoke-node"], "{nodes}");

    // A caller, made in the shared database the replicas use.
    let created = Command::new(env!("CARGO_BIN_EXE_kubeinvoke"))
        .args(["sp", "create", "--name", "chart-admin", "--role", "Owner", "--scope", "/", "--store", &store_url])
        .arg("--data-dir")
        .arg(work.path().join("admin"))
        .output()
        .unwrap();
    assert!(created.status.success(), "sp create: {}", String::from_utf8_lossy(&created.stderr));
    let admin: Value = serde_json::from_slice(&created.stdout).unwrap();

    // Through the Service, trusting the one CA of the chart's certificate.
    let ca = cluster.kubectl_ok(&[
        "get",
        "secret",
        &format!("{RELEASE}-tls"),
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.decode(ca.trim()).unwrap();
    let forward = Forward::to_service(cluster, work.path());
    let host = format!("{RELEASE}.{NAMESPACE}.svc");
    let client = client_for_service(&ca, &host, forward.1);
    let base = format!("https://{host}:{}", forward.1);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", admin["appId"].as_str().unwrap()),
        ("client_secret", admin["password"].as_str().unwrap()),
        ("scope", "https://management.azure.com/.default"),
    ];
    let token_url = format!("{base}/{}/oauth2/v2.0/token", admin["tenant"].as_str().unwrap());
    let (status, token) = send(&forward, client.post(token_url).form(&form)).await;
    assert_eq!(status, 200, "token: {token}");
    let token = token["access_token"].as_str().unwrap().to_string();
    let arm = |method: reqwest::Method, path: &str| {
        let separator = if path.contains('?') { '&' } else { '?' };
        client.request(method, format!("{base}{path}{separator}api-version=2024-09-01")).bearer_auth(&token)
    };

    // The cluster it runs in, registered with its own service account's token at the in-cluster
    // address: the chart's RBAC is all the server has.
    let account_token = cluster.kubectl_ok(&["create", "token", RELEASE, "-n", NAMESPACE]);
    let admin_kubeconfig: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(&std::fs::read(&cluster.kubeconfig).unwrap()).unwrap();
    let ca_data = admin_kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: self\n  cluster: {{server: \"https://10.96.0.1:443\", certificate-authority-data: {ca_data}}}\n\
         users:\n- name: kubeinvoke\n  user: {{token: {}}}\ncontexts:\n- name: self\n  context: {{cluster: self, user: kubeinvoke}}\ncurrent-context: self\n",
        account_token.trim()
    );
    let (status, body) =
        send(&forward, arm(reqwest::Method::PUT, &group_path("chart")).json(&json!({"location": "westeurope"}))).await;
    assert!(status == 200 || status == 201, "group: {status} {body}");
    let properties = json!({"kubeconfig": base64::engine::general_purpose::STANDARD.encode(kubeconfig)});
    let cluster_body = json!({"location": "westeurope", "properties": properties});
    let (status, body) =
        send(&forward, arm(reqwest::Method::PUT, &cluster_path("chart", "self")).json(&cluster_body)).await;
    assert!(status == 200 || status == 201, "cluster: {status} {body}");

    let command = json!({"command": "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'"});
    let submit = arm(reqwest::Method::POST, &format!("{}/runCommand", cluster_path("chart", "self"))).json(&command);
    let response = send_raw(&forward, submit).await;
    assert_eq!(response.status().as_u16(), 202, "{}", response.text().await.unwrap());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&base), "{location} is the Service's address");
    let mut result = Value::Null;
    for _ in 0..600 {
        let (status, body) = send(&forward, client.get(&location).bearer_auth(&token)).await;
        if status == 200 {
            result = body;
            break;
        }
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    // It ran in a Pod as the commands' service account: the server has no such identity.
    assert_eq!(result["properties"]["logs"], format!("system:serviceaccount:{COMMANDS}:command-runner"), "{result}");
    drop(forward);

    helm(cluster, &["uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m"]);
    cluster.eventually("nothing of the release is left", Duration::from_secs(120), || left_behind(cluster).is_empty());
    cluster.kubectl_ok(&["delete", "namespace", NAMESPACE, "--wait=false"]);
}
