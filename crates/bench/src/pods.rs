//! The Pod path on the real node (`scripts/dev-cluster.sh`: kubelet + containerd + runc, offline):
//! submit → Pod created → Running → result stored, over sequential commands through
//! `--executor kubernetes`, against the cluster's own time for a bare Pod of the same image on the
//! same node — created through the API, watched until its container ended, its log read — measured in the
//! same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use crate::bench::Bench;

/// Where the dev cluster's real node is, and what keeps other Pods off it.
const NODE_LABEL: (&str, &str) = ("kubeinvoke.io/real-node", "true");
const NODE_TOLERATION: &str = r#"{"key": "kubeinvoke.io/real-node", "operator": "Exists", "effect": "NoSchedule"}"#;

pub struct PodPath {
    pub commands: usize,
    /// Submit → the command Pod seen created.
    pub created: Quantiles,
    /// Submit → the command Pod seen Running.
    pub running: Quantiles,
    /// Submit → the command's container seen terminated.
    pub ended: Quantiles,
    /// Submit → the result stored (200).
    pub stored: Quantiles,
    /// Baseline: a bare Pod's create → seen `Succeeded` → its log read.
    pub bare: Quantiles,
    /// Baseline: a bare Pod's create → its container seen terminated.
    pub bare_ended: Quantiles,
}

#[derive(Clone, Copy)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn quantiles(mut samples: Vec<Duration>) -> Quantiles {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    Quantiles { p50_ms: at(0.5), p99_ms: at(0.99) }
}

/// When each Pod of a namespace was first seen in a phase, by name.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
    ended: HashMap<String, Instant>,
}

fn watch_pods(pods: Api<Pod>, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut version = "0".to_string();
        loop {
            let Ok(stream) = pods.watch(&WatchParams::default().timeout(290), &version).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(event)) = stream.next().await {
                let pod = match event {
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                    WatchEvent::Error(_) => {
                        version = "0".into();
                        break;
                    }
                    _ => continue,
                };
                let now = Instant::now();
                if let Some(v) = pod.metadata.resource_version.clone() {
                    version = v;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                let status = pod.status.as_ref();
                let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
                // The container's end reaches a watch before (or with) the Pod's phase.
                let terminated = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|all| all.iter().any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some())));
                let mut seen = seen.lock().unwrap();
                seen.created.entry(name.clone()).or_insert(now);
                if terminated || phase == "Succeeded" || phase == "Failed" {
                    seen.ended.entry(name).or_insert(now);
                } else if phase == "Running" {
                    seen.running.entry(name).or_insert(now);
                }
            }
        }
    })
}

async fn wait_ended(seen: &Mutex<Seen>, name: &str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(at) = seen.lock().unwrap().ended.get(name) {
            return Ok(*at);
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never ended");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The baseline Pod: the command image on the real node, locked down as command Pods are (the
/// same security context and requests), one container running `true`, no files.
fn bare_pod(name: &str, image: &str) -> anyhow::Result<Pod> {
    let locked_down = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    let toleration: Value = serde_json::from_str(NODE_TOLERATION)?;
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "nodeSelector": {NODE_LABEL.0: NODE_LABEL.1},
            "tolerations": [toleration],
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "command", "image": image, "command": ["bash", "-c", "true"],
                            "resources": {"requests": {"cpu": "50m"}}, "securityContext": locked_down}]
        }
    }))?)
}

/// `scripts/dev-cluster.sh up`: the cluster's admin kubeconfig and the command image's reference.
async fn dev_cluster_up(state: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    let up = tokio::process::Command::new("scripts/dev-cluster.sh")
        .arg("up")
        .arg(state)
        .env("KUBEINVOKE_DEV_CLUSTER_OWNER", std::process::id().to_string())
        .output()
        .await
        .context("scripts/dev-cluster.sh")?;
    anyhow::ensure!(up.status.success(), "dev-cluster.sh up: {}", String::from_utf8_lossy(&up.stderr));
    let stdout = String::from_utf8_lossy(&up.stdout);
    let image = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COMMAND_IMAGE="))
        .context("dev-cluster.sh printed no COMMAND_IMAGE=")?;
    Ok((state.join("admin.kubeconfig"), image.to_string()))
}

pub async fn run(bench: &Bench, commands: usize) -> anyhow::Result<PodPath> {
    let state = bench.work.join("dev-cluster");
    let (kubeconfig_path, image) = dev_cluster_up(&state).await?;
    let measured = measure(bench, commands, &kubeconfig_path, &image).await;
    let _ = tokio::process::Command::new("scripts/dev-cluster.sh").arg("down").arg(&state).output().await;
    measured
}

async fn measure(
    bench: &Bench,
    commands: usize,
    kubeconfig_path: &std::path::Path,
    image: &str,
) -> anyhow::Result<PodPath> {
    let kubeconfig = std::fs::read(kubeconfig_path)?;
    let options = kube::config::KubeConfigOptions::default();
    let config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(kubeconfig_path)?, &options).await?;
    let client = kube::Client::try_from(config)?;

    // Baseline: bare Pods through the API, each watched until it ended, then its log read.
    let bare_pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen_bare = Arc::new(Mutex::new(Seen::default()));
    let watcher = watch_pods(bare_pods.clone(), seen_bare.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut bare, mut bare_ended) = (Vec::new(), Vec::new());
    // The first Pod warms the node (image unpacked, cgroups made); it is not measured.
    for i in 0..=commands {
        let name = format!("bare-{i}");
        let started = Instant::now();
        bare_pods.create(&PostParams::default(), &bare_pod(&name, image)?).await?;
        let ended = wait_ended(&seen_bare, &name).await?;
        bare_pods.logs(&name, &LogParams { container: Some("command".into()), ..Default::default() }).await?;
        if i > 0 {
            bare.push(started.elapsed());
            bare_ended.push(ended - started);
        }
        bare_pods.delete(&name, &DeleteParams::background()).await?;
    }
    watcher.abort();

    // The Pod path: a kubeinvoke server running commands as Pods on the same node.
    let node_selector = format!("{}={}", NODE_LABEL.0, NODE_LABEL.1);
    let server = bench
        .start(
            "pods",
            &[
                "--executor",
                "kubernetes",
                "--k8s-image",
                image,
                "--k8s-node-selector",
                &node_selector,
                "--k8s-toleration",
                NODE_TOLERATION,
                "--k8s-cpu-request",
                "50m",
            ],
        )
        .await?;
    server
        .put(&format!("/subscriptions/{}/resourceGroups/bench", crate::target::SUB), json!({"location": "westeurope"}))
        .await?;
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&kubeconfig);
    server
        .put(
            &crate::target::cluster_path("bench", "dev"),
            json!({"location": "westeurope", "properties": {"kubeconfig": encoded}}),
        )
        .await?;
    let command_pods: Api<Pod> = Api::namespaced(client, "aks-command");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = watch_pods(command_pods, seen.clone());
    // The first command creates the namespace; it is not measured.
    let warmup = server.submit("bench", "dev", "true").await?;
    server.wait_polling(&warmup, Duration::from_millis(10)).await?;
    let (mut created, mut running, mut ended, mut stored) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..commands {
        let started = Instant::now();
        let location = server.submit("bench", "dev", "true").await?;
        let result = server.wait_polling(&location, Duration::from_millis(10)).await?;
        stored.push(started.elapsed());
        anyhow::ensure!(result["properties"]["exitCode"] == 0, "a command failed: {result}");
        let id = result["id"].as_str().context("id")?;
        let name = format!("command-{id}");
        let seen = seen.lock().unwrap();
        let at = |phase: &HashMap<String, Instant>, what: &str| {
            phase.get(&name).map(|at| *at - started).with_context(|| format!("{name} was never seen {what}"))
        };
        created.push(at(&seen.created, "created")?);
        // A Pod can pass through Running between two watch events; then it counts as running when ended.
        ended.push(at(&seen.ended, "ended")?);
        running.push(at(&seen.running, "Running").unwrap_or(*ended.last().unwrap()));
    }
    watcher.abort();
    Ok(PodPath {
        commands,
        created: quantiles(created),
        running: quantiles(running),
        ended: quantiles(ended),
        stored: quantiles(stored),
        bare: quantiles(bare),
        bare_ended: quantiles(bare_ended),
    })
}
