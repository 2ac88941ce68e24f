//! The Pod executor (`--executor kubernetes`) against the real control plane: the Pod and its
//! Secret are validated by the real API server, placed by the real scheduler on a kwok node,
//! driven through their lifecycle by kwok (see tools/cluster/config/kwok.yaml for its rules),
//! read back through the real API (status, logs) and cleaned up; the garbage collector deletes
//! the Secret of a Pod that goes; cancel deletes the running Pod.

use std::time::Duration;

use serde_json::{Value, json};

use crate::dev_cluster::{DevCluster, POD_LOG};
use crate::harness::*;

const NAMESPACE: &str = "aks-command";

async fn pod_server(extra: &[&str]) -> Option<(Server, &'static DevCluster)> {
    pod_server_with_image("docker.io/library/busybox:1.36", extra).await
}

async fn pod_server_with_image(image: &str, extra: &[&str]) -> Option<(Server, &'static DevCluster)> {
    let cluster = DevCluster::shared()?;
    let mut args = vec!["--executor", "kubernetes", "--k8s-image", image];
    args.extend_from_slice(extra);
    let s = Server::start(&args).await;
    s.create_cluster("rg", "dev", json!({"kubeconfig": cluster.kubeconfig_base64()})).await;
    Some((s, cluster))
}

/// The Pod `command-<id>` as the API server has it (`None` once it is gone).
fn pod(cluster: &DevCluster, id: &str) -> Option<Value> {
    let out = cluster.kubectl(&["get", "pod", &format!("command-{id}"), "-n", NAMESPACE, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn secret_exists(cluster: &DevCluster, id: &str) -> bool {
    cluster.kubectl(&["get", "secret", &format!("command-{id}"), "-n", NAMESPACE]).status.success()
}

/// Waits until the command's Pod exists and is scheduled; returns it.
fn scheduled_pod(cluster: &DevCluster, id: &str) -> Value {
    let mut seen = None;
    cluster.eventually("the command Pod being scheduled", Duration::from_secs(30), || {
        seen = pod(cluster, id).filter(|p| p["spec"]["nodeName"].is_string());
        seen.is_some()
    });
    seen.unwrap()
}

fn assert_cleaned_up(cluster: &DevCluster, id: &str) {
    cluster.eventually("the Pod and Secret being deleted", Duration::from_secs(20), || {
        pod(cluster, id).is_none() && !secret_exists(cluster, id)
    });
}

#[tokio::test]
async fn a_command_pod_is_scheduled_run_read_and_cleaned_up_through_the_real_api() {
    let Some((s, cluster)) = pod_server(&[]).await else {
        return;
    };
    let context = encodebytes(&zip_of(&[("ns.yaml", b"kind: Namespace\n")]));
    let location = s.submit("rg", "dev", json!({"command": "sleep 3; exit 0", "context": context})).await;
    let id = id_of(&location);
    let pod = scheduled_pod(cluster, &id);
    let node = pod["spec"]["nodeName"].as_str().unwrap();
    assert!(["kwok-node-a", "kwok-node-b"].contains(&node), "the tainted node is not for it: {node}");
    assert_eq!(pod["spec"]["containers"][0]["name"], "user-command");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert!(pod["spec"]["initContainers"][0].is_object(), "the context is unpacked by an init container");
    // The Secret with the context and kubeconfig is owned by the Pod (the API server accepted it).
    let secret: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "secret",
        &format!("command-{id}"),
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]))
    .unwrap();
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("Pod"), pod["metadata"]["uid"].as_str()));

    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0);
    assert_eq!(result["properties"]["logs"], POD_LOG, "logs read through the API server from the node");
    assert_cleaned_up(cluster, &id);
}

#[tokio::test]
async fn the_exit_code_comes_from_the_pods_real_status() {
    let Some((s, cluster)) = pod_server(&[]).await else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "echo failing; exit 3"})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 3, "{result}");
    assert_cleaned_up(cluster, &id_of(&location));
}

#[tokio::test]
async fn azures_failure_example_an_image_that_cannot_be_pulled_fails_with_image_pull_backoff() {
    let Some((s, cluster)) = pod_server_with_image("registry.invalid/no-such-image:1", &[]).await else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "kubectl get pods"})).await;
    let result = s.wait(&location).await;
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandResultFailed.json")).unwrap();
    let expected = &example["responses"]["200"]["body"]["properties"];
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert_eq!(result["properties"]["reason"], expected["reason"], "{result}");
    assert_cleaned_up(cluster, &id_of(&location));
}

#[tokio::test]
async fn tolerations_and_node_selector_decide_where_the_pod_lands() {
    let Some((s, cluster)) = pod_server(&[
        "--k8s-node-selector",
        "pool=dedicated",
        "--k8s-toleration",
        r#"{"key": "dedicated", "operator": "Equal", "value": "commands", "effect": "NoSchedule"}"#,
    ])
    .await
    else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "sleep 2"})).await;
    let pod = scheduled_pod(cluster, &id_of(&location));
    assert_eq!(pod["spec"]["nodeName"], "kwok-node-tainted");
    assert_eq!(s.wait(&location).await["properties"]["exitCode"], 0);
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_fails_with_the_schedulers_own_message() {
    // The dedicated pool without the toleration its taint asks for: no node fits.
    let Some((s, cluster)) = pod_server(&["--k8s-node-selector", "pool=dedicated", "--k8s-start-deadline", "3s"]).await
    else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "true"})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    let reason = result["properties"]["reason"].as_str().unwrap();
    // Three kwok nodes and the real node, none of which fits.
    assert!(reason.starts_with("Unschedulable: 0/4 nodes are available"), "{reason}");
    assert!(
        reason.contains("untolerated taint") && reason.contains("didn't match Pod's node affinity/selector"),
        "{reason}"
    );
    assert_cleaned_up(cluster, &id_of(&location));
}

#[tokio::test]
async fn active_deadline_seconds_ends_a_command_that_runs_too_long() {
    let Some((s, cluster)) = pod_server(&["--command-timeout", "2s"]).await else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "sleep 60"})).await;
    let pod = scheduled_pod(cluster, &id_of(&location));
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 2);
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Failed", "{result}");
    assert_eq!(result["properties"]["reason"], "Timeout", "{result}");
    assert_cleaned_up(cluster, &id_of(&location));
}

#[tokio::test]
async fn the_garbage_collector_deletes_the_secret_when_its_pod_goes() {
    let Some((mut s, cluster)) = pod_server(&[]).await else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "sleep 60"})).await;
    let id = id_of(&location);
    scheduled_pod(cluster, &id);
    assert!(secret_exists(cluster, &id));
    // The server dies: nothing of kubeinvoke is left to clean up; the cluster's own GC must.
    s.kill9();
    cluster.kubectl_ok(&["delete", "pod", &format!("command-{id}"), "-n", NAMESPACE, "--wait=false"]);
    cluster.eventually("the garbage collector deleting the owned Secret", Duration::from_secs(60), || {
        !secret_exists(cluster, &id)
    });
}

#[tokio::test]
async fn cancel_deletes_the_running_pod_and_says_who() {
    let Some((s, cluster)) = pod_server(&[]).await else {
        return;
    };
    let location = s.submit("rg", "dev", json!({"command": "sleep 60"})).await;
    let id = id_of(&location);
    scheduled_pod(cluster, &id);
    let r = s.post(&format!("{}/cancel", result_path("rg", "dev", &id)), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Canceled", "{result}");
    assert_eq!(result["properties"]["reason"], format!("Canceled by {}", s.admin().unwrap().app_id));
    assert_cleaned_up(cluster, &id);
}

#[tokio::test]
async fn command_pods_are_admitted_where_pod_security_enforces_restricted() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let namespace = "restricted-commands";
    cluster.kubectl(&["create", "namespace", namespace]);
    let label = ["pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest"];
    cluster.kubectl_ok(&["label", "--overwrite", "namespace", namespace, label[0], label[1]]);
    // The namespace really enforces it: an ordinary Pod is refused.
    let plain = cluster.kubectl(&["run", "plain", "-n", namespace, "--image", "docker.io/library/busybox:1.36"]);
    assert!(String::from_utf8_lossy(&plain.stderr).contains("violates PodSecurity"), "{plain:?}");
    // A command Pod, with its unpacking init container, is admitted and runs.
    let Some((s, _)) = pod_server(&["--k8s-namespace", namespace]).await else {
        return;
    };
    let context = encodebytes(&zip_of(&[("ns.yaml", b"kind: Namespace\n")]));
    let location = s.submit("rg", "dev", json!({"command": "sleep 1; exit 0", "context": context})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
}

#[tokio::test]
async fn a_pod_that_admission_refuses_fails_at_once_with_the_policys_message() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let namespace = "guarded-commands";
    let policy = [
        "apiVersion: admissionregistration.k8s.io/v1",
        "kind: ValidatingAdmissionPolicy",
        "metadata: {name: kubeinvoke-allowed-images}",
        "spec:",
        "  failurePolicy: Fail",
        "  matchConstraints:",
        "    resourceRules: [{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}]",
        "  validations:",
        "  - expression: \"object.spec.containers.all(c, c.image.startsWith('registry.internal/'))\"",
        "    message: images must come from registry.internal",
        "---",
        "apiVersion: admissionregistration.k8s.io/v1",
        "kind: ValidatingAdmissionPolicyBinding",
        "metadata: {name: kubeinvoke-allowed-images}",
        "spec:",
        "  policyName: kubeinvoke-allowed-images",
        "  validationActions: [Deny]",
        "  matchResources: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: guarded-commands}}}",
    ];
    cluster.apply(&policy.join("\n"));
    let Some((s, _)) = pod_server(&["--k8s-namespace", namespace, "--k8s-start-deadline", "120s"]).await else {
        return;
    };
    // The API server enforces a new policy once its informer has it: submit until it does.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        let started = std::time::Instant::now();
        let location = s.submit("rg", "dev", json!({"command": "sleep 1"})).await;
        let result = s.wait(&location).await;
        if result["properties"]["provisioningState"] == "Failed" {
            assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after the start deadline");
            break result;
        }
        assert!(std::time::Instant::now() < deadline, "the policy never refused a command Pod: {result}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let reason = result["properties"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("PodRejected:") && reason.contains("images must come from registry.internal"),
        "{reason}"
    );
}
