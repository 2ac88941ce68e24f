//! The local executor: commands run on this host (sandboxed) with the registered cluster's
//! kubeconfig, against the real API server.

use serde_json::{Value, json};

use crate::dev_cluster::DevCluster;
use crate::harness::*;

/// A server with one cluster registered with the dev cluster's admin kubeconfig.
async fn server_with_cluster(properties: Value) -> Option<(Server, &'static DevCluster)> {
    let cluster = DevCluster::shared()?;
    let s = Server::start(&[]).await;
    let mut properties = properties;
    properties["kubeconfig"] = json!(cluster.kubeconfig_base64());
    s.create_cluster("rg", "dev", properties).await;
    Some((s, cluster))
}

async fn invoke(s: &Server, body: Value) -> Value {
    let location = s.submit("rg", "dev", body).await;
    s.wait(&location).await
}

#[tokio::test]
async fn azures_success_example_really_creates_the_namespace() {
    let Some((s, cluster)) = server_with_cluster(json!({})).await else {
        return;
    };
    // The request of the official example (RunCommandRequest.json), with the ns.yaml it applies.
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/azure-2024-09-01/RunCommandRequest.json")).unwrap();
    let command = example["parameters"]["requestPayload"]["command"].as_str().unwrap();
    assert_eq!(command, "kubectl apply -f ns.yaml");
    let ns = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dummy\n";
    let context = encodebytes(&zip_of(&[("ns.yaml", ns)]));
    let result = invoke(&s, json!({"command": command, "context": context})).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["exitCode"], 0);
    assert_eq!(result["properties"]["logs"], "namespace/dummy created\n");
    let phase = cluster.kubectl_ok(&["get", "namespace", "dummy", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active", "the namespace exists in the cluster");
}

#[tokio::test]
async fn kubectl_lists_the_nodes_and_a_forbidden_verb_is_the_clusters_own_error() {
    let Some((s, _)) = server_with_cluster(json!({})).await else {
        return;
    };
    let result = invoke(&s, json!({"command": "kubectl get nodes -o name"})).await;
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    assert_eq!(
        result["properties"]["logs"],
        "node/kubeinvoke-node\nnode/kwok-node-a\nnode/kwok-node-b\nnode/kwok-node-tainted\n",
        "{result}"
    );
    // A request the API server itself refuses comes back as kubectl printed it, exit code 1.
    let result = invoke(&s, json!({"command": "kubectl get --raw /no-such-path"})).await;
    assert_eq!(result["properties"]["exitCode"], 1, "{result}");
    assert!(result["properties"]["logs"].as_str().unwrap().contains("NotFound"), "{result}");
}

#[tokio::test]
async fn helm_installs_a_chart_from_the_attached_files() {
    let Some((s, cluster)) = server_with_cluster(json!({})).await else {
        return;
    };
    cluster.kubectl(&["create", "namespace", "helm-demo"]);
    let chart = zip_of(&[
        ("chart/Chart.yaml", b"apiVersion: v2\nname: hello\nversion: 0.1.0\n"),
        (
            "chart/templates/configmap.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
        ),
        ("chart/values.yaml", b"greeting: hello from kubeinvoke\n"),
    ]);
    let command = "helm install demo ./chart -n helm-demo && helm list -n helm-demo -o json";
    let result = invoke(&s, json!({"command": command, "context": encodebytes(&chart)})).await;
    assert_eq!(result["properties"]["exitCode"], 0, "{result}");
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert!(logs.contains("STATUS: deployed"), "{logs}");
    let listed: Value = serde_json::from_str(logs.lines().last().unwrap()).unwrap();
    assert_eq!(listed[0]["name"], "demo", "{listed}");
    assert_eq!(listed[0]["status"], "deployed");
    let greeting = cluster.kubectl_ok(&[
        "get",
        "configmap",
        "demo-greeting",
        "-n",
        "helm-demo",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(greeting, "hello from kubeinvoke");
}

#[tokio::test]
async fn cluster_token_commands_act_as_the_caller_with_the_clusters_own_rbac() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "dev", json!({"kubeconfig": cluster.kubeconfig_base64(), "aadProfile": {"managed": true}}))
        .await;
    // The API server trusts this kubeinvoke's built-in issuer for the AKS AAD server app; each
    // caller runs commands as itself (a clusterToken must be the submitter's own).
    let [alice, bob] = cluster.aad_callers(&s, ["alice", "bob"]).await;
    assert!(alice.user.starts_with("kubeinvoke:") && alice.user != bob.user, "{} {}", alice.user, bob.user);

    // Alice alone may read Pods in team-a.
    cluster.let_read_pods("team-a", &alice.user);
    let script = "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo; \
                  kubectl get pods -n team-a; echo pods=$?; kubectl get secrets -n team-a; echo secrets=$?";
    for (caller, pods_allowed) in [(&alice, true), (&bob, false)] {
        let who = &caller.user;
        let run = format!("{}/runCommand", cluster_path("rg", "dev"));
        let body = json!({"command": script, "clusterToken": caller.cluster_token});
        let r = send_as(&s, &caller.arm, reqwest::Method::POST, &run, Some(body)).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let result = s.wait(r.header("location").unwrap()).await;
        let logs = result["properties"]["logs"].as_str().unwrap();
        assert_eq!(logs.lines().next(), Some(who.as_str()), "whoami prints the caller: {logs}");
        if pods_allowed {
            assert!(logs.contains("No resources found in team-a namespace.") && logs.contains("pods=0"), "{logs}");
        } else {
            assert!(
                logs.contains(&format!("User \"{who}\" cannot list resource \"pods\"")) && logs.contains("pods=1"),
                "{logs}"
            );
        }
        assert!(
            logs.contains(&format!(
                "Error from server (Forbidden): secrets is forbidden: User \"{who}\" cannot list resource \"secrets\""
            )),
            "the cluster's own Forbidden: {logs}"
        );
        assert!(logs.contains("secrets=1"), "{logs}");
    }
}

#[tokio::test]
async fn a_fan_out_and_a_saved_command_reach_the_real_api_server() {
    let Some(cluster) = DevCluster::shared() else {
        return;
    };
    let s = Server::start(&[]).await;
    s.create_group("fleet").await;
    for name in ["east", "west"] {
        let body = json!({"location": "westeurope", "tags": {"env": "prod"},
                          "properties": {"kubeconfig": cluster.kubeconfig_base64()}});
        assert!(s.put(&cluster_path("fleet", name), body).await.status.is_success());
    }
    // One command on every prod cluster: each target's kubectl reaches the API server.
    let runs = format!("/subscriptions/{SUB}/resourceGroups/fleet/providers/Microsoft.ContainerService");
    let r = s
        .post(
            &format!("{runs}/runCommand"),
            json!({"command": "kubectl get nodes -o name", "targets": {"tags": {"env": "prod"}}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let run = loop {
        let reply = s.get(&location).await;
        if reply.status == 200 {
            break reply.json();
        }
        assert!(std::time::Instant::now() < deadline, "the run never finished: {}", reply.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(run["properties"]["provisioningState"], "Succeeded", "{run}");
    for target in run["properties"]["targets"].as_array().unwrap() {
        let name = target["clusterId"].as_str().unwrap().rsplit('/').next().unwrap();
        let result = s.get(&result_path("fleet", name, target["commandId"].as_str().unwrap())).await.json();
        assert_eq!(
            result["properties"]["logs"],
            "node/kubeinvoke-node\nnode/kwok-node-a\nnode/kwok-node-b\nnode/kwok-node-tainted\n",
            "{result}"
        );
    }

    // A saved command whose parameter names a namespace: created with the value as data.
    let saved = format!("{runs}/savedCommands/make-ns");
    let body = json!({"properties": {"script": "kubectl create namespace \"$ns\"",
                                     "parameters": {"ns": {"type": "string", "pattern": "[a-z0-9-]{1,63}"}}}});
    assert_eq!(s.put(&saved, body).await.status, 201);
    let r = s
        .post(
            &format!("{}/runSavedCommand", cluster_path("fleet", "east")),
            json!({"savedCommand": saved, "parameters": {"ns": "from-a-saved-command"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = s.wait(r.header("location").unwrap()).await;
    assert_eq!(result["properties"]["logs"], "namespace/from-a-saved-command created\n", "{result}");
    let phase = cluster.kubectl_ok(&["get", "namespace", "from-a-saved-command", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active");
}

#[tokio::test]
async fn a_saved_command_run_as_a_read_only_user_lists_pods_and_is_refused_create_by_the_api_server() {
    let Some((s, cluster)) = server_with_cluster(json!({})).await else {
        return;
    };
    cluster.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: runas-pod-reader}\n\
         rules:\n- {apiGroups: [''], resources: [pods], verbs: [get, list]}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: runas-pod-readers}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: runas-pod-reader}\n\
         subjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: runas-readers}\n",
    );
    let saved = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/savedCommands/read-pods");
    let script = "kubectl get pods -A -o name >/dev/null && echo list-ok; \
                  kubectl create configmap runas-probe -n default 2>&1; \
                  kubectl auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}'; echo; \
                  cat \"$KUBECONFIG\"";
    let body = json!({"properties": {"script": script, "runAs": {"user": "jane", "groups": ["runas-readers"]}}});
    let r = s.put(&saved, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.post(&format!("{}/runSavedCommand", cluster_path("rg", "dev")), json!({"savedCommand": saved})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let result = s.wait(r.header("location").unwrap()).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert!(logs.starts_with("list-ok\n"), "the user may list pods: {logs}");
    assert!(
        logs.contains(r#"configmaps is forbidden: User "jane" cannot create resource "configmaps""#),
        "the API server itself refuses what the user may not do: {logs}"
    );
    assert!(logs.contains("jane [\"runas-readers\",\"system:authenticated\"]"), "{logs}");
    // The command held only the user's own certificate, never the registered credential.
    use base64::Engine;
    let registered =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(cluster.kubeconfig_base64()).unwrap())
            .unwrap();
    let admin_certificate = registered
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("the registered kubeconfig holds a client certificate");
    assert!(!logs.contains(admin_certificate), "{logs}");
    assert!(logs.contains("name: kubeinvoke-run-as"), "{logs}");
    // The history says whom it ran as; the signing request is gone.
    let history = s.get(&format!("{}/commandResults", cluster_path("rg", "dev"))).await.json();
    assert_eq!(history["value"][0]["properties"]["runAs"], "user jane (groups runas-readers)", "{history}");
    let left = cluster.kubectl_ok(&["get", "csr", "-o", "name"]);
    assert!(!left.contains("kubeinvoke-"), "{left}");
}
