//! The Kubernetes executor, driven through kube-rs against the fake API server, for what no real
//! part can be made to do on cue (see `fake_apiserver.rs`; everything else is shown against the
//! real control plane and its real node in `tests/cluster`), and the Helm chart under
//! `deploy/chart`, rendered and parsed into typed Kubernetes objects.

use kubeinvoke_testkit::chart;
mod fake_apiserver;
use kubeinvoke_testkit::harness;
mod manifests;
use kubeinvoke_testkit::prerequisites;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Toleration};
use kubeinvoke::command::{FailureReason, Outcome};
use kubeinvoke::executor::kubernetes::{KubernetesConfig, KubernetesExecutor, PodTemplate};
use kubeinvoke::executor::{ExecLimits, Executor, Job, StopReason, StopSignal};
use serde_json::json;

use fake_apiserver::{FakeApiServer, Lifecycle};

fn executor(start_deadline: Duration) -> KubernetesExecutor {
    KubernetesExecutor::new(KubernetesConfig {
        template: PodTemplate {
            image: "example.test/command-runtime:1".into(),
            service_account: Some("command-runner".into()),
            tolerations: vec![Toleration {
                key: Some("pool".into()),
                operator: Some("Equal".into()),
                value: Some("tainted".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            node_selector: BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())]),
            ..PodTemplate::default()
        },
        start_deadline,
    })
}

fn job(id: &str, command: &str, kubeconfig: Vec<u8>) -> Job {
    Job {
        kubeconfig: Some(kubeconfig),
        limits: ExecLimits { timeout: Duration::from_secs(120), ..ExecLimits::default() },
        ..Job::plain(kubeinvoke::command::CommandId::from_text(id), command)
    }
}

/// Runs a job to its end with no stop asked for.
async fn run(executor: &KubernetesExecutor, job: Job) -> Outcome {
    let (_keep, stop) = tokio::sync::watch::channel(None);
    tokio::time::timeout(Duration::from_secs(30), executor.run(job, StopSignal::new(stop)))
        .await
        .expect("the run ended")
}

/// Nothing of the command is left in the cluster.
fn assert_cleaned(fake: &FakeApiServer, id: &str) {
    let name = format!("command-{id}");
    assert!(!fake.pod_names().contains(&name), "pod left: {:?}", fake.pod_names());
    assert!(!fake.secret_names().contains(&name), "secret left: {:?}", fake.secret_names());
}

fn failure(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { reason, .. } => reason.as_reason(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_runs_as_a_pod_with_the_spec_asked_for_and_is_cleaned_up() {
    let fake = FakeApiServer::start().await;
    fake.script("echo hello", Lifecycle::Exit { code: 0, logs: "hello\n".into(), run_for: Duration::from_millis(200) });
    let executor = executor(Duration::from_secs(60));
    let mut job = job("a1", "echo hello", fake.kubeconfig());
    job.context = harness::zip_of(&[("script.sh", b"echo from a file")]);
    let output = tempfile::NamedTempFile::new().unwrap();
    job.output = Some(output.path().to_path_buf());
    let outcome = run(&executor, job).await;
    assert_eq!(outcome, Outcome::Exited { exit_code: 0, logs: "hello\n".into() });
    assert_eq!(std::fs::read_to_string(output.path()).unwrap(), "hello\n", "live output was written");
    assert_eq!(fake.namespaces(), vec!["aks-command".to_string()], "the namespace was created");
    assert_cleaned(&fake, "a1");

    // The Pod as the executor sent it, parsed into the typed object.
    let pods = fake.created_pods();
    let pod: Pod = serde_json::from_value(pods[0].clone()).unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("command-a1"));
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["kubeinvoke.io/command-id"], "a1");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(120));
    assert_eq!(spec.service_account_name.as_deref(), Some("command-runner"));
    assert_eq!(spec.automount_service_account_token, Some(true));
    assert_eq!(spec.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(spec.tolerations.unwrap()[0].key.as_deref(), Some("pool"));
    let container = &spec.containers[0];
    assert_eq!(container.name, "user-command");
    assert_eq!(container.image.as_deref(), Some("example.test/command-runtime:1"));
    assert_eq!(container.command.as_ref().unwrap(), &vec!["bash".to_string(), "-c".into(), "echo hello".into()]);
    let resources = container.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "200m");
    assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "500Mi");
    assert_eq!(resources.limits.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "1Gi");
    let init = &spec.init_containers.unwrap()[0];
    assert_eq!(init.image, container.image, "the files are unpacked by the same image");
    assert_eq!(init.working_dir, container.working_dir, "into the command's working directory");
    // Locked down as Pod Security `restricted` asks, every container of it.
    let pod_security = spec.security_context.as_ref().unwrap();
    assert_eq!((pod_security.run_as_non_root, pod_security.run_as_user), (Some(true), Some(1000)));
    assert_eq!(pod_security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    for locked in [container, init] {
        let security = locked.security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false), "{}", locked.name);
        assert_eq!(security.read_only_root_filesystem, Some(true), "{}", locked.name);
        assert_eq!(security.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        let mounted: Vec<&str> = locked.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        for writable in ["/command", "/home/command", "/tmp"] {
            assert!(mounted.contains(&writable), "{}: {mounted:?}", locked.name);
        }
    }
    let home = container.env.as_ref().unwrap().iter().find(|e| e.name == "HOME").unwrap();
    assert_eq!(home.value.as_deref(), Some("/home/command"), "helm's cache has a writable home");

    // The Secret holds the zip and is owned by the Pod, so the cluster deletes it with the Pod.
    let secret: Secret = serde_json::from_value(fake.created_secrets()[0].clone()).unwrap();
    assert!(secret.data.unwrap().contains_key("context.zip"));
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Pod", "command-a1"));
    assert!(!owner.uid.is_empty());
}

#[tokio::test]
async fn exit_codes_and_the_ways_a_pod_fails_become_results() {
    let fake = FakeApiServer::start().await;
    fake.script("exit 3", Lifecycle::Exit { code: 3, logs: "failing\n".into(), run_for: Duration::from_millis(50) });
    fake.script("pull", Lifecycle::ImagePullBackOff);
    fake.script("oom", Lifecycle::OomKilled { logs: "allocating\n".into() });
    fake.script("evicted", Lifecycle::Evicted { message: "The node was low on resource: memory.".into() });
    fake.script("deleted", Lifecycle::DeletedWhileRunning { logs: "started\n".into() });
    fake.script("deadline", Lifecycle::DeadlineExceeded);
    let executor = executor(Duration::from_secs(60));
    let kubeconfig = fake.kubeconfig();

    let exited = run(&executor, job("b1", "exit 3", kubeconfig.clone())).await;
    assert_eq!(exited, Outcome::Exited { exit_code: 3, logs: "failing\n".into() });
    assert_eq!(failure(&run(&executor, job("b2", "pull", kubeconfig.clone())).await), "ImagePullBackoff");
    match run(&executor, job("b3", "oom", kubeconfig.clone())).await {
        Outcome::Exited { exit_code: 137, logs } => {
            assert!(logs.starts_with("allocating\n") && logs.contains("OOMKilled") && logs.contains("1Gi"), "{logs}")
        }
        other => panic!("expected exit 137, got {other:?}"),
    }
    assert_eq!(
        failure(&run(&executor, job("b4", "evicted", kubeconfig.clone())).await),
        "Evicted: The node was low on resource: memory."
    );
    let deleted = failure(&run(&executor, job("b5", "deleted", kubeconfig.clone())).await);
    assert!(deleted.starts_with("PodDeleted"), "{deleted}");
    assert_eq!(failure(&run(&executor, job("b6", "deadline", kubeconfig.clone())).await), "Timeout");
    for id in ["b1", "b2", "b3", "b4", "b5", "b6"] {
        assert_cleaned(&fake, id);
    }
}

#[tokio::test]
async fn a_pod_that_cannot_be_scheduled_fails_after_the_start_deadline_with_the_schedulers_message() {
    let fake = FakeApiServer::start().await;
    let message = "0/3 nodes are available: 3 node(s) had untolerated taint {pool: gpu}.";
    fake.script("true", Lifecycle::Unschedulable { message: message.into() });
    let executor = executor(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let reason = failure(&run(&executor, job("c1", "true", fake.kubeconfig())).await);
    assert_eq!(reason, format!("Unschedulable: {message}"));
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the deadline");
    assert_cleaned(&fake, "c1");
}

#[tokio::test]
async fn an_unreachable_api_server_or_a_taken_name_fails_without_touching_others_objects() {
    let closed = format!("127.0.0.1:{}", kubeinvoke_testkit::ports::free_port());
    let executor = executor(Duration::from_secs(60));
    let unreachable = fake_apiserver::kubeconfig_for(&format!("http://{closed}"));
    let reason = failure(&run(&executor, job("d1", "true", unreachable)).await);
    assert!(reason.starts_with("StartFailed: cannot reach the cluster's API server"), "{reason}");

    let fake = FakeApiServer::start().await;
    fake.plant("aks-command", "command-d2", "someone-else");
    let reason = failure(&run(&executor, job("d2", "true", fake.kubeconfig())).await);
    assert!(reason.starts_with("PodAlreadyExists"), "{reason}");
    assert!(fake.pod_names().contains(&"command-d2".to_string()), "a Pod we did not create is left alone");

    let outcome = run(&executor, job("d3", "true", b"not: [a kubeconfig".to_vec())).await;
    assert!(failure(&outcome).starts_with("InvalidClusterSetting: properties.kubeconfig"), "{outcome:?}");
    // The executor itself never takes an exec plugin, whatever reached it.
    let exec = String::from_utf8(fake.kubeconfig()).unwrap().replace("token: fake-token", "exec: {command: /bin/true}");
    let outcome = run(&executor, job("d4", "true", exec.into_bytes())).await;
    assert!(failure(&outcome).contains("users[0].user.exec is not allowed"), "{outcome:?}");
    assert!(!fake.pod_names().contains(&"command-d4".to_string()), "nothing reached the cluster");
}

#[tokio::test]
async fn cancel_deletes_the_pod_and_says_who() {
    let fake = FakeApiServer::start().await;
    fake.script("sleep", Lifecycle::RunUntilDeleted { logs: "working\n".into() });
    let executor = executor(Duration::from_secs(60));
    let (stop, stopped) = tokio::sync::watch::channel(None);
    let job = job("e1", "sleep 600", fake.kubeconfig());
    let running = tokio::spawn(async move { executor.run(job, StopSignal::new(stopped)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.pod_names().contains(&"command-e1".to_string()));
    stop.send_replace(Some(StopReason::Cancel("app-123".into())));
    let outcome = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap();
    match outcome {
        Outcome::Failed { reason: FailureReason::Canceled(by), logs } => {
            assert_eq!(by, "app-123");
            assert!(logs.starts_with("working\n"), "{logs}");
        }
        other => panic!("expected canceled, got {other:?}"),
    }
    assert_cleaned(&fake, "e1");
}

#[tokio::test]
async fn a_saved_command_run_as_a_service_account_is_a_pod_of_that_account_with_no_kubeconfig() {
    let fake = FakeApiServer::start().await;
    let executor = executor(Duration::from_secs(60));
    let mut job = job("g1", "kubectl get pods", fake.kubeconfig());
    job.service_account = Some("deployer".into());
    assert!(matches!(run(&executor, job).await, Outcome::Exited { exit_code: 0, .. }));
    let pod: Pod = serde_json::from_value(fake.created_pods()[0].clone()).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("deployer"), "not the server's command-runner");
    assert_eq!(spec.automount_service_account_token, Some(true));
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert!(!env.iter().any(|e| e.name == "KUBECONFIG"), "only the account's own token: {env:?}");
}

#[tokio::test]
async fn a_command_acting_as_its_caller_gets_the_callers_kubeconfig_and_no_service_account() {
    let fake = FakeApiServer::start().await;
    let executor = executor(Duration::from_secs(60));
    let mut job = job("f1", "kubectl get pods", fake.kubeconfig());
    job.as_caller = true;
    assert!(matches!(run(&executor, job).await, Outcome::Exited { exit_code: 0, .. }));
    let pod: Pod = serde_json::from_value(fake.created_pods()[0].clone()).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.service_account_name, None);
    let env = spec.containers[0].env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "KUBECONFIG"), "{env:?}");
    let secret: Secret = serde_json::from_value(fake.created_secrets()[0].clone()).unwrap();
    assert!(secret.data.unwrap().contains_key("kubeconfig"));
}

#[tokio::test]
async fn the_server_runs_commands_as_pods_and_sweeps_leftovers() {
    let fake = FakeApiServer::start().await;
    fake.script(
        "echo via-server",
        Lifecycle::Exit { code: 0, logs: "via-server\n".into(), run_for: Duration::from_millis(100) },
    );
    // `--retention 30s`: the janitor, and the sweeper with it, runs every 15 s.
    let s = harness::Server::start(&["--executor", "kubernetes", "--retention", "30s"]).await;
    assert!(s.banner.contains("kubernetes"), "{}", s.banner);
    use base64::Engine;
    let kubeconfig = base64::engine::general_purpose::STANDARD.encode(fake.kubeconfig());
    s.create_cluster("rg", "c1", json!({"kubeconfig": kubeconfig})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo via-server"})).await;
    let result = s.wait(&location).await;
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "{result}");
    assert_eq!(result["properties"]["logs"], "via-server\n");
    let pod = &fake.created_pods()[0];
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false, "no service account configured: no token");

    // A leftover of a command that is not running (a crashed replica's, say) is swept.
    fake.plant("aks-command", "command-0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !fake.pod_names().is_empty() || !fake.secret_names().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never swept: {:?}", fake.pod_names());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A cluster can choose the local executor for its own commands.
    s.create_cluster("rg", "c2", json!({"kubeconfig": kubeconfig, "commandExecutor": "local"})).await;
    let local = s.submit("rg", "c2", json!({"command": "echo on-the-host"})).await;
    assert_eq!(s.wait(&local).await["properties"]["logs"], "on-the-host\n");
    assert_eq!(fake.created_pods().len(), 1, "the local command made no Pod");
    let r = s
        .put(
            &harness::cluster_path("rg", "c3"),
            json!({"location": "westeurope", "properties": {"commandExecutor": "vm"}}),
        )
        .await;
    r.assert_error(400, "InvalidParameter");
}

#[tokio::test]
async fn secret_values_are_masked_in_a_pods_output_and_its_live_file() {
    let fake = FakeApiServer::start().await;
    fake.script(
        "print secret",
        Lifecycle::Exit { code: 0, logs: "key=hunter2\nagain hunter2!\n".into(), run_for: Duration::from_millis(50) },
    );
    let executor = executor(Duration::from_secs(60));
    let mut job = job("m1", "print secret", fake.kubeconfig());
    job.masked = vec!["hunter2".into()];
    let output = tempfile::NamedTempFile::new().unwrap();
    job.output = Some(output.path().to_path_buf());
    let outcome = run(&executor, job).await;
    assert_eq!(outcome, Outcome::Exited { exit_code: 0, logs: "key=***\nagain ***!\n".into() });
    assert_eq!(std::fs::read_to_string(output.path()).unwrap(), "key=***\nagain ***!\n");
}
