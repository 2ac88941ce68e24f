//! The Pod path against a real control plane (`scripts/dev-cluster.sh`): submit → Pod created →
//! Running → result stored, over sequential commands through `--executor kubernetes`, against
//! the control plane's own time to get a bare Pod Running (created through the API and watched),
//! measured in the same run. kwok's nodes run no container: a Pod "runs" for kwok's default half
//! second, so the phases after Running measure kubeinvoke's log handling and recording.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::bench::Bench;

pub struct PodPath {
    pub commands: usize,
    /// Submit → the command Pod seen created.
    pub created: Quantiles,
    /// Submit → the command Pod seen Running.
    pub running: Quantiles,
    /// Submit → the result stored (200).
    pub stored: Quantiles,
    /// Baseline: a bare Pod's create → seen Running.
    pub bare_running: Quantiles,
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

/// When each Pod of a namespace was first seen created and first seen Running, by name.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
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
                let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let mut seen = seen.lock().unwrap();
                seen.created.entry(name.clone()).or_insert(now);
                if running {
                    seen.running.entry(name).or_insert(now);
                }
            }
        }
    })
}

async fn wait_running(seen: &Mutex<Seen>, name: &str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(at) = seen.lock().unwrap().running.get(name) {
            return Ok(*at);
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never ran");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn run(bench: &Bench, commands: usize) -> anyhow::Result<PodPath> {
    let state = bench.work.join("dev-cluster");
    let up = tokio::process::Command::new("scripts/dev-cluster.sh")
        .arg("up")
        .arg(&state)
        .env("KUBEINVOKE_DEV_CLUSTER_OWNER", std::process::id().to_string())
        .output()
        .await
        .context("scripts/dev-cluster.sh")?;
    anyhow::ensure!(up.status.success(), "dev-cluster.sh up: {}", String::from_utf8_lossy(&up.stderr));
    let kubeconfig_path = state.join("admin.kubeconfig");
    let kubeconfig = std::fs::read(&kubeconfig_path)?;
    let options = kube::config::KubeConfigOptions::default();
    let config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(&kubeconfig_path)?, &options).await?;
    let client = kube::Client::try_from(config)?;

    // Baseline: bare Pods through the API, each watched until Running.
    let bare: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen_bare = Arc::new(Mutex::new(Seen::default()));
    let watcher = watch_pods(bare.clone(), seen_bare.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bare_running = Vec::new();
    for i in 0..commands {
        let name = format!("bare-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36",
                     "command": ["bash", "-c", "true"]}]}
        }))?;
        let started = Instant::now();
        bare.create(&PostParams::default(), &pod).await?;
        bare_running.push(wait_running(&seen_bare, &name).await? - started);
        bare.delete(&name, &DeleteParams::background()).await?;
    }
    watcher.abort();

    // The Pod path: a kubeinvoke server running commands as Pods in that cluster.
    let server =
        bench.start("pods", &["--executor", "kubernetes", "--k8s-image", "docker.io/library/busybox:1.36"]).await?;
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
    let (mut created, mut running, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..commands {
        let started = Instant::now();
        let location = server.submit("bench", "dev", "true").await?;
        let result = server.wait_polling(&location, Duration::from_millis(10)).await?;
        stored.push(started.elapsed());
        anyhow::ensure!(result["properties"]["exitCode"] == 0, "a command failed: {result}");
        let id = result["id"].as_str().context("id")?;
        let name = format!("command-{id}");
        let seen = seen.lock().unwrap();
        created.push(*seen.created.get(&name).context("the Pod was never seen")? - started);
        running.push(*seen.running.get(&name).context("the Pod was never seen Running")? - started);
    }
    watcher.abort();
    let _ = tokio::process::Command::new("scripts/dev-cluster.sh").arg("down").arg(&state).output().await;
    Ok(PodPath {
        commands,
        created: quantiles(created),
        running: quantiles(running),
        stored: quantiles(stored),
        bare_running: quantiles(bare_running),
    })
}
