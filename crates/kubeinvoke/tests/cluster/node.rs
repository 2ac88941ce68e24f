//! The Pod executor on the real node (`scripts/lib/real-node.sh`: kubelet + containerd + runc,
//! offline): command Pods that really run — the command image built here, its output, exit code
//! and end from the real kubelet — through the public API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dev_cluster::DevCluster;
use crate::harness::*;

const NAMESPACE: &str = "aks-command";

/// A server whose command Pods go to the real node only, as the service account `runner`
/// (allowed `extra_rules` in every namespace, and nothing else).
async fn node_server(cluster: &DevCluster, image: &str, extra: &[&str]) -> Server {
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
    cluster.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: runner, namespace: aks-command}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: runner-namespaces}\n\
         rules:\n- {apiGroups: [''], resources: [namespaces], verbs: [get, list, create]}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: runner-namespaces}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: runner-namespaces}\n\
         subjects:\n- {kind: ServiceAccount, name: runner, namespace: aks-command}\n",
    );
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
        "--k8s-memory-request",
        "64Mi",
        "--k8s-cpu-request",
        "50m",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args).await;
    s.create_cluster("rg", "real", json!({"kubeconfig": cluster.kubeconfig_base64()})).await;
    s
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
    let cluster = DevCluster::shared();
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandRequest.json")).unwrap();
    let command = example["parameters"]["requestPayload"]["command"].as_str().unwrap();
    let manifest = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dummy\n";
    let context = encodebytes(&zip_of(&[("ns.yaml", manifest)]));
    let result = run(&s, json!({"command": command, "context": context})).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    assert_eq!(result["properties"]["logs"], "namespace/dummy created\n", "{result}");
    assert!(cluster.kubectl(&["get", "namespace", "dummy"]).status.success(), "the namespace is really there");
}

#[tokio::test]
async fn exit_codes_stderr_and_the_runtime_are_the_containers_own() {
    let cluster = DevCluster::shared();
    let s = node_server(cluster, &cluster.command_image, &[]).await;
    let script = "echo out; echo err >&2; id -u; touch /not-writable 2>/dev/null || echo read-only-root; \
                  mkdir -p \"$HOME/.cache\" && echo home-writable; kubectl version --client >/dev/null && echo kubectl-ok; exit 7";
    let result = run(&s, json!({"command": script})).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 7, "{result}");
    assert_eq!(result["properties"]["logs"], "out\nerr\n1000\nread-only-root\nhome-writable\nkubectl-ok\n", "{result}");
}

#[tokio::test]
async fn azures_failure_example_an_image_that_is_not_there_fails_with_image_pull_backoff_from_the_kubelet() {
    let cluster = DevCluster::shared();
    let s = node_server(cluster, "registry.invalid/no-such-image:1", &[]).await;
    let result = run(&s, json!({"command": "kubectl get pods"})).await;
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandResultFailed.json")).unwrap();
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert_eq!(result["properties"]["reason"], example["responses"]["200"]["body"]["properties"]["reason"], "{result}");
}
