//! Every object the Helm chart under `deploy/chart` renders (`helm template`) parses into its
//! typed Kubernetes object, loses nothing in the round trip (a misspelt field would be dropped
//! and fail here), and the parts fit together. The cluster tests apply it to a real API server.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

#[derive(Default)]
struct Parsed {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    budgets: Vec<PodDisruptionBudget>,
    secrets: Vec<Secret>,
    namespaces: Vec<Namespace>,
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    kinds: Vec<String>,
}

/// Parses `document` as `T` and checks that serializing it gives the document back.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(document: &Value, file: &str) -> T {
    let object: T = serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("{file}: {e}: {document}"));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(&back, document, "{file}: fields were lost in the round trip");
    object
}

fn parse_all() -> Parsed {
    let mut parsed = Parsed::default();
    let text = crate::chart::rendered_chart(std::path::Path::new("helm"));
    let file = "deploy/chart/kubeinvoke";
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let document: Value = Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}"));
        if document.is_null() {
            continue;
        }
        let kind = document["kind"].as_str().unwrap_or_else(|| panic!("{file}: a document without kind")).to_string();
        match kind.as_str() {
            "Namespace" => parsed.namespaces.push(typed(&document, file)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(&document, file)),
            "Secret" => parsed.secrets.push(typed(&document, file)),
            "Role" => parsed.roles.push(typed(&document, file)),
            "RoleBinding" => drop(typed::<RoleBinding>(&document, file)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&document, file)),
            "ClusterRole" => parsed.cluster_roles.push(typed(&document, file)),
            "Deployment" => parsed.deployments.push(typed(&document, file)),
            "Service" => parsed.services.push(typed(&document, file)),
            "PodDisruptionBudget" => parsed.budgets.push(typed(&document, file)),
            other => panic!("{file}: no typed check for kind {other}"),
        }
        parsed.kinds.push(kind);
    }
    parsed
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn deploy_manifests_are_valid_kubernetes_objects_that_fit_together() {
    if !crate::prerequisites::runs("the chart's rendering test", crate::prerequisites::programs(&["helm"])) {
        return;
    }
    let parsed = parse_all();
    for kind in ["Deployment", "Service", "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    {
        assert!(parsed.kinds.iter().any(|k| k == kind), "the chart renders no {kind}");
    }
    let deployment = &parsed.deployments[0];
    let spec = deployment.spec.as_ref().unwrap();
    assert!(spec.replicas.unwrap() >= 2, "several replicas");
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selects(spec.selector.match_labels.as_ref().unwrap(), &pod_labels));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--executor=kubernetes".to_string()), "{args:?}");
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe.as_ref().and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
    let store =
        container.env.as_ref().unwrap().iter().find(|e| e.name == "KUBEINVOKE_STORE").expect("store from a Secret");
    assert!(
        store.value_from.as_ref().unwrap().secret_key_ref.is_some(),
        "the database URL is not written in the manifest"
    );

    // One serving certificate for every replica (clients trust one CA), from the chart's Secret.
    assert!(args.contains(&"--tls-cert=/etc/kubeinvoke/tls/tls.crt".to_string()), "{args:?}");
    let tls_volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "tls").expect("a tls volume");
    let tls_secret = tls_volume.secret.as_ref().and_then(|s| s.secret_name.clone()).unwrap();
    let secret = parsed.secrets.iter().find(|s| s.metadata.name.as_deref() == Some(&tls_secret)).expect("its Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.as_ref().unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(data.get(key).is_some_and(|v| !v.0.is_empty()), "{key} in the tls Secret");
    }
    // The commands' namespace enforces Pod Security `restricted`.
    let commands = parsed.namespaces.iter().find(|n| n.metadata.name.as_deref() == Some("aks-command")).unwrap();
    let labels = commands.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("restricted"));

    let service = parsed.services[0].spec.as_ref().unwrap();
    assert!(selects(service.selector.as_ref().unwrap(), &pod_labels), "the Service reaches the replicas");
    let budget = parsed.budgets[0].spec.as_ref().unwrap();
    assert!(selects(budget.selector.as_ref().unwrap().match_labels.as_ref().unwrap(), &pod_labels));

    // Pods, their logs and Secrets in the commands' namespace only; cluster-wide, reading that one
    // namespace and nothing else.
    let rule_allows = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule], resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.resources.as_ref().is_some_and(|rs| rs.iter().any(|x| x == resource || x == "*"))
                && r.verbs.iter().any(|v| v == verb || v == "*")
        })
    };
    let runner = parsed
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("kubeinvoke-command-runner"))
        .expect("the runner Role");
    assert_eq!(runner.metadata.namespace.as_deref(), Some("aks-command"));
    let rules = runner.rules.clone().unwrap();
    for (resource, verb) in [
        ("pods", "create"),
        ("pods", "watch"),
        ("pods", "delete"),
        ("pods", "list"),
        ("pods/log", "get"),
        ("secrets", "create"),
        ("secrets", "delete"),
        ("secrets", "list"),
    ] {
        assert!(rule_allows(&rules, resource, verb), "the executor needs {verb} on {resource}");
    }
    assert!(!rule_allows(&rules, "secrets", "get"), "the executor never reads a Secret back");
    for role in &parsed.cluster_roles {
        let rules = role.rules.clone().unwrap_or_default();
        for resource in ["pods", "secrets", "pods/log", "pods/exec", "configmaps"] {
            for verb in ["get", "list", "create", "delete", "watch"] {
                assert!(
                    !rule_allows(&rules, resource, verb),
                    "{:?} grants {verb} {resource} cluster-wide",
                    role.metadata.name
                );
            }
        }
        for rule in &rules {
            assert_eq!(rule.verbs, ["get"], "{:?}: cluster-wide it only reads its namespace", role.metadata.name);
            assert_eq!(rule.resource_names.as_deref(), Some(&["aks-command".to_string()][..]), "{rule:?}");
        }
    }
}
