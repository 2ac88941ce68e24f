//! The Pod executor on the real node (`scripts/lib/real-node.sh`: kubelet + containerd + runc,
//! offline): command Pods that really run — the command image built here, its output, exit code
//! and end from the real kubelet — through the public API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dev_cluster::DevCluster;
use crate::harness::*;

const NAMESPACE: &str = "aks-command";

/// A server whose command Pods go to the real node only, as the service account `runner`
/// (allowed to read and create namespaces, and nothing else).
async fn node_server(cluster: &DevCluster, image: &str, extra: &[&str]) -> Server {
    static RUNNER: std::sync::Once = std::sync::Once::new();
    RUNNER.call_once(|| runner_account(cluster));
    let toleration = r#"{"key": "kubeinvoke.io/real-node", "operator": "Exists", "effect": "NoSchedule"}"#;
    let mut args = vec![
        "--executor",
        "kubernetes",
        "--k8s-image",
        image,
        "--k8s-service-account",
        "runner",
        "--k8s-node-selector",
        "kubeinvoke.io/real-node=true",
        "--k8s-toleration",
        toleration,
        "--k8s-cpu-request",
        "50m",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args).await;
    s.create_cluster("rg", "real", json!({"kubeconfig": cluster.kubeconfig_base64()})).await;
    s
}

/// The commands' namespace and its service account `runner`, allowed namespaces only.
fn runner_account(cluster: &DevCluster) {
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
    cluster.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: runner, namespace: aks-command}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: runner-namespaces}\n\
         rules:\n- {apiGroups: [''], resources: [namespaces], verbs: [get, list, create]}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: runner-namespaces}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: runner-namespaces}\n\
         subjects:\n- {kind: ServiceAccount, name: runner, namespace: aks-command}\n",
    );
}

async fn run(s: &Server, body: Value) -> Value {
    let location = s.submit("rg", "real", body).await;
    wait_long(s, &location).await
}

/// Polls a result for up to two minutes (a first Pod on a cold node takes a few seconds).
async fn wait_long(s: &Server, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = s.get(location).await;
        if r.status == 200 {
            return r.json();
        }
        assert!(Instant::now() < deadline, "the command did not finish: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn azures_success_example_runs_in_a_real_container_and_creates_the_namespace() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandRequest.json")).unwrap();
    let command = example["parameters"]["requestPayload"]["command"].as_str().unwrap();
    // The example's command; a namespace of this test's own (the local executor's test makes `dummy`).
    let manifest = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dummy-on-a-real-node\n";
    let context = encodebytes(&zip_of(&[("ns.yaml", manifest)]));
    let result = run(&s, json!({"command": command, "context": context})).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    assert_eq!(result["properties"]["logs"], "namespace/dummy-on-a-real-node created\n", "{result}");
    let there = cluster.kubectl(&["get", "namespace", "dummy-on-a-real-node"]);
    assert!(there.status.success(), "the namespace is really there");
}

#[tokio::test]
async fn exit_codes_stderr_and_the_runtime_are_the_containers_own() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    // stdout and stderr reach the kubelet through two pipes: a pause keeps their order certain.
    let script = "echo out; sleep 0.2; echo err >&2; sleep 0.2; id -u; touch /not-writable 2>/dev/null || echo read-only-root; \
                  mkdir -p \"$HOME/.cache\" && echo home-writable; kubectl version --client >/dev/null && echo kubectl-ok; exit 7";
    let result = run(&s, json!({"command": script})).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 7, "{result}");
    assert_eq!(result["properties"]["logs"], "out\nerr\n1000\nread-only-root\nhome-writable\nkubectl-ok\n", "{result}");
}

#[tokio::test]
async fn azures_failure_example_an_image_that_is_not_there_fails_with_image_pull_backoff_from_the_kubelet() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, "registry.invalid/no-such-image:1", &[]).await;
    let result = run(&s, json!({"command": "kubectl get pods"})).await;
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandResultFailed.json")).unwrap();
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert_eq!(result["properties"]["reason"], example["responses"]["200"]["body"]["properties"]["reason"], "{result}");
}

/// The Pod of a command once the real kubelet runs its container.
fn running_pod(cluster: &DevCluster, id: &str) {
    cluster.eventually("the command's container running on the real node", Duration::from_secs(60), || {
        let out = cluster.kubectl(&[
            "get",
            "pod",
            &format!("command-{id}"),
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.phase}",
        ]);
        String::from_utf8_lossy(&out.stdout) == "Running"
    });
}

/// Host processes whose command line contains `needle` (a container's processes are the host's).
fn processes_with(needle: &str) -> usize {
    let out = std::process::Command::new("pgrep").args(["-f", needle]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn output_is_live_while_the_container_runs() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let location = s.submit("rg", "real", json!({"command": "echo first; sleep 4; echo second"})).await;
    let id = id_of(&location);
    let url = s.url(&format!("{}/logs?api-version={API}&follow=true", result_path("rg", "real", &id)));
    let mut response = s.client.get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = Vec::new();
    while !seen.ends_with(b"first\n") {
        let chunk = response.chunk().await.unwrap().expect("the stream stays open while the command runs");
        seen.extend_from_slice(&chunk);
    }
    let state = s.get(&location).await.json();
    assert_eq!(state["properties"]["provisioningState"], "Running", "the first line came while it ran: {state}");
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, b"first\nsecond\n");
    assert_eq!(wait_long(&s, &location).await["properties"]["logs"], "first\nsecond\n");
}

#[tokio::test]
async fn the_timeout_is_the_pods_active_deadline_and_cancel_really_stops_the_process() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let result = run(&s, json!({"command": "echo started; sleep 3601", "timeoutInSeconds": 5})).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert_eq!(result["properties"]["reason"], "Timeout", "{result}");
    cluster.eventually("the timed-out process gone", Duration::from_secs(30), || processes_with("sleep 3601") == 0);

    let location = s.submit("rg", "real", json!({"command": "sleep 3602"})).await;
    let id = id_of(&location);
    running_pod(cluster, &id);
    assert!(processes_with("sleep 3602") >= 1, "the container's process runs on this host");
    let r = s.post(&format!("{}/cancel", result_path("rg", "real", &id)), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = wait_long(&s, &location).await;
    assert_eq!(result["properties"]["provisioningState"], "Canceled", "{result}");
    cluster.eventually("the canceled process gone", Duration::from_secs(30), || processes_with("sleep 3602") == 0);
    cluster.eventually("the Pod deleted", Duration::from_secs(30), || {
        !cluster.kubectl(&["get", "pod", &format!("command-{id}"), "-n", NAMESPACE]).status.success()
    });
}

#[tokio::test]
async fn a_command_over_its_memory_limit_is_oom_killed_by_the_kernel() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let limits = ["--k8s-memory-request", "32Mi", "--k8s-memory-limit", "48Mi"];
    let s = node_server(cluster, &cluster.command_image, &limits).await;
    // bash keeps what a command substitution prints in its own memory: 200 MB of it.
    let result =
        run(&s, json!({"command": "echo allocating; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo never"})).await;
    assert_eq!(result["properties"]["exitCode"], 137, "{result}");
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert!(logs.starts_with("allocating\n") && logs.contains("OOMKilled") && logs.contains("48Mi"), "{logs}");
}

#[tokio::test]
async fn a_pod_evicted_through_the_eviction_api_fails_naming_why() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let location = s.submit("rg", "real", json!({"command": "sleep 3603"})).await;
    let id = id_of(&location);
    running_pod(cluster, &id);
    let eviction = format!(
        "{{\"apiVersion\": \"policy/v1\", \"kind\": \"Eviction\", \"metadata\": {{\"name\": \"command-{id}\", \"namespace\": \"{NAMESPACE}\"}}}}"
    );
    let path = cluster.state.join(format!("eviction-{id}.json"));
    std::fs::write(&path, eviction).unwrap();
    let raw = format!("/api/v1/namespaces/{NAMESPACE}/pods/command-{id}/eviction");
    cluster.kubectl_ok(&["create", "--raw", &raw, "-f", path.to_str().unwrap()]);
    let result = wait_long(&s, &location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    let reason = result["properties"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("Evicted: EvictionByEvictionAPI"), "{reason}");
}

#[tokio::test]
async fn without_a_cluster_token_the_command_is_its_service_account_and_nothing_more() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let script = "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo; \
                  kubectl get secrets -n kube-system >/dev/null 2>&1 && echo secrets-readable || echo secrets-forbidden";
    let result = run(&s, json!({"command": script})).await;
    assert_eq!(
        result["properties"]["logs"], "system:serviceaccount:aks-command:runner\nsecrets-forbidden\n",
        "{result}"
    );
}

#[tokio::test]
async fn a_cluster_token_command_on_the_real_node_acts_as_its_caller_under_the_clusters_rbac() {
    use base64::Engine;
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    // Registered at the kubernetes Service address, which the server and the Pod both reach.
    let service = std::fs::read(cluster.state.join("node/service.kubeconfig")).unwrap();
    let service = base64::engine::general_purpose::STANDARD.encode(service);
    s.create_cluster("rg", "aad", json!({"kubeconfig": service, "aadProfile": {"managed": true}})).await;
    let [carol, dave] = cluster.aad_callers(&s, ["carol", "dave"]).await;
    cluster.let_read_pods("team-real", &carol.user);
    let script = "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo; \
                  kubectl get pods -n team-real >/dev/null 2>&1 && echo pods-allowed || echo pods-forbidden";
    for (caller, expected) in [(&carol, "pods-allowed"), (&dave, "pods-forbidden")] {
        let run = format!("{}/runCommand", cluster_path("rg", "aad"));
        let body = json!({"command": script, "clusterToken": caller.cluster_token});
        let r = send_as(&s, &caller.arm, reqwest::Method::POST, &run, Some(body)).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let result = wait_long(&s, r.header("location").unwrap()).await;
        assert_eq!(result["properties"]["logs"], format!("{}\n{expected}\n", caller.user), "{result}");
    }
}
