//! deploy/chart: rendered by helm, validated by the real API server (server-side dry run), its
//! RBAC applied for real, and the service account shown to hold exactly what the Pod executor
//! needs: a whole command runs with its token, and nothing beyond is allowed.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::dev_cluster::DevCluster;
use crate::harness::*;

const SERVICE_ACCOUNT: &str = "system:serviceaccount:kubeinvoke:kubeinvoke";

/// `kubectl apply -f -` of `manifest`, with extra flags; its output, or a panic with the error.
fn apply_stdin(cluster: &DevCluster, manifest: &str, flags: &[&str]) -> String {
    use std::io::Write;
    let mut child = Command::new(cluster.bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["apply", "-f", "-"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl apply {flags:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl auth can-i` as the chart's service account; `resource` may name a subresource
/// (`pods/log`; kubectl alone would read that as the Pod named "log").
fn can(cluster: &DevCluster, verb: &str, resource: &str, namespace: &str) -> bool {
    // `namespaces/<name>` is a resource and its name; anything else after a slash a subresource.
    let (resource, subresource) = match resource.split_once('/') {
        Some(("namespaces", _)) | None => (resource, ""),
        Some(split) => split,
    };
    let mut args = vec!["auth", "can-i", verb, resource, "-n", namespace];
    let subresource = format!("--subresource={subresource}");
    if subresource != "--subresource=" {
        args.push(&subresource);
    }
    let as_account = format!("--as={SERVICE_ACCOUNT}");
    args.push(&as_account);
    let out = cluster.kubectl(&args);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// `kubectl auth can-i --all-namespaces` as the chart's service account.
fn can_cluster_wide(cluster: &DevCluster, verb: &str, resource: &str) -> bool {
    let as_account = format!("--as={SERVICE_ACCOUNT}");
    let out = cluster.kubectl(&["auth", "can-i", verb, resource, "--all-namespaces", &as_account]);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test]
async fn the_chart_is_accepted_by_the_api_server_and_its_rbac_is_exactly_what_the_executor_needs() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    for namespace in ["kubeinvoke", "aks-command"] {
        cluster.kubectl(&["create", "namespace", namespace]);
    }
    let rendered = crate::chart::rendered_chart(&cluster.bin.join("helm"));
    let dry_run = apply_stdin(cluster, &rendered, &["--dry-run=server"]);
    for object in [
        "deployment.apps/kubeinvoke",
        "service/kubeinvoke",
        "poddisruptionbudget.policy/kubeinvoke",
        "secret/kubeinvoke-store",
        "clusterrole.rbac.authorization.k8s.io/kubeinvoke-command-namespace",
        "role.rbac.authorization.k8s.io/kubeinvoke-command-runner",
    ] {
        assert!(dry_run.contains(&format!("{object} created (server dry run)")), "{object}: {dry_run}");
    }
    // The RBAC for real: the service account, its role and the binding.
    let rbac: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| {
            [
                "kind: ServiceAccount",
                "kind: ClusterRole\n",
                "kind: ClusterRoleBinding",
                "kind: Role\n",
                "kind: RoleBinding",
            ]
            .iter()
            .any(|k| doc.contains(k))
        })
        .collect();
    apply_stdin(cluster, &rbac.join("\n---\n"), &[]);

    for (verb, resource) in [
        ("create", "pods"),
        ("get", "pods"),
        ("list", "pods"),
        ("watch", "pods"),
        ("delete", "pods"),
        ("get", "pods/log"),
        ("create", "secrets"),
        ("list", "secrets"),
        ("delete", "secrets"),
        ("get", "namespaces/aks-command"),
    ] {
        assert!(can(cluster, verb, resource, "aks-command"), "the executor needs {verb} {resource}");
    }
    for (verb, resource) in [
        ("get", "secrets"),
        ("update", "pods"),
        ("patch", "pods"),
        ("create", "pods/exec"),
        ("create", "pods/portforward"),
        ("get", "configmaps"),
        ("delete", "namespaces"),
        ("create", "deployments"),
        ("list", "nodes"),
        ("create", "serviceaccounts/token"),
        ("create", "rolebindings"),
        ("create", "namespaces"),
        ("get", "namespaces/kube-system"),
    ] {
        assert!(!can(cluster, verb, resource, "aks-command"), "more than needed: {verb} {resource}");
    }
    // Whoever takes the server's Pod reads no Secret of the cluster's, and starts no Pod elsewhere.
    for namespace in ["default", "kube-system", "kubeinvoke"] {
        for (verb, resource) in [("list", "secrets"), ("get", "secrets"), ("create", "pods"), ("list", "pods")] {
            assert!(!can(cluster, verb, resource, namespace), "{verb} {resource} in {namespace}");
        }
    }
    assert!(!can_cluster_wide(cluster, "list", "secrets"), "list secrets in every namespace");

    // Enough: a whole command runs with nothing but the service account's token.
    let token = cluster.kubectl_ok(&["create", "token", "kubeinvoke", "-n", "kubeinvoke"]);
    let admin: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&std::fs::read(&cluster.kubeconfig).unwrap()).unwrap();
    let cluster_entry = serde_yaml_ng::to_string(&admin["clusters"]).unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{cluster_entry}users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: dev, user: sa}}\ncurrent-context: sa\n",
        token.trim()
    );
    use base64::Engine;
    let kubeconfig = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
    let s = Server::start(&["--executor", "kubernetes", "--k8s-image", "docker.io/library/busybox:1.36"]).await;
    s.create_cluster("rg", "dev", json!({"kubeconfig": kubeconfig})).await;
    let location =
        s.submit("rg", "dev", json!({"command": "sleep 1", "context": encodebytes(&zip_of(&[("a", b"a")]))})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    assert_eq!(result["properties"]["logs"], crate::dev_cluster::POD_LOG, "pods/log was readable");
}
