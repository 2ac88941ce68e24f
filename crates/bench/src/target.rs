//! A release `kubeinvoke serve` process under test: started by the testkit's launcher (the same
//! one the tests use) on a loopback port with its own data directory, reached over HTTPS with the
//! CA it generated, measured through `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub use kubeinvoke_testkit::harness::{API, SUB, cluster_path};

pub struct Target {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub client: reqwest::Client,
}

/// Which server the benchmark starts.
#[derive(Clone, Debug)]
pub struct Launch {
    pub data_dir: PathBuf,
    /// Extra `serve` flags.
    pub args: Vec<String>,
}

impl Target {
    pub async fn start(launch: &Launch) -> anyhow::Result<Target> {
        std::fs::create_dir_all(&launch.data_dir)?;
        let log = launch.data_dir.join("../server.log");
        let started = kubeinvoke_testkit::launch::start(kubeinvoke_testkit::launch::Launch {
            data_dir: &launch.data_dir,
            args: &launch.args,
            env: &[],
            log: &log,
            host: None,
        })
        .await?;
        let client = kubeinvoke_testkit::launch::https_client(&launch.data_dir.join("tls/ca.pem"))?
            .pool_max_idle_per_host(256)
            .build()?;
        let mut target = Target {
            child: Some(started.child),
            base: started.base,
            data_dir: launch.data_dir.clone(),
            token: String::new(),
            client,
        };
        if let Ok(admin) = std::fs::read(launch.data_dir.join("bootstrap-admin.json")) {
            let admin: kubeinvoke_testkit::harness::Credentials = serde_json::from_slice(&admin)?;
            let scope = "https://management.azure.com/.default";
            target.token = kubeinvoke_testkit::launch::token(&target.client, &target.base, &admin, scope).await?;
        }
        Ok(target)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let field = |name| kubeinvoke_testkit::launch::status_bytes(self.pid(), name);
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resident memory by kind: (anonymous — the heap and stacks, file-backed — SQLite's
    /// memory-mapped database among them), in bytes.
    pub fn memory_kinds(&self) -> (u64, u64) {
        let field = |name| kubeinvoke_testkit::launch::status_bytes(self.pid(), name);
        (field("RssAnon:"), field("RssFile:"))
    }

    pub fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}api-version={API}", self.base)
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let r = self.client.put(self.url(path)).bearer_auth(&self.token).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("PUT {path}: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    pub async fn create_cluster(&self, group: &str, name: &str) -> anyhow::Result<()> {
        self.put(&format!("/subscriptions/{SUB}/resourceGroups/{group}"), json!({"location": "westeurope"})).await?;
        self.put(&cluster_path(group, name), json!({"location": "westeurope", "properties": {}})).await
    }

    /// Submits a command; returns its result URL.
    pub async fn submit(&self, group: &str, name: &str, command: &str) -> anyhow::Result<String> {
        let r = self
            .client
            .post(self.url(&format!("{}/runCommand", cluster_path(group, name))))
            .bearer_auth(&self.token)
            .json(&json!({"command": command}))
            .send()
            .await?;
        if r.status() != 202 {
            bail!("runCommand: {} {}", r.status(), r.text().await?);
        }
        Ok(r.headers().get("location").context("Location")?.to_str()?.to_string())
    }

    /// Polls a result URL without pausing until it is final; returns its body.
    pub async fn wait_hot(&self, location: &str) -> anyhow::Result<Value> {
        self.wait_polling(location, Duration::ZERO).await
    }

    pub async fn wait_polling(&self, location: &str, pause: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let r = self.client.get(location).bearer_auth(&self.token).send().await?;
            match r.status().as_u16() {
                200 => return Ok(r.json().await?),
                202 => {}
                other => bail!("polling {location}: {other} {}", r.text().await?),
            }
            if Instant::now() > deadline {
                bail!("{location} did not finish");
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Polls a result URL until the command is in `state` (e.g. `Running`).
    pub async fn wait_for_state(&self, location: &str, state: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r: Value = self.client.get(location).bearer_auth(&self.token).send().await?.json().await?;
            if r["properties"]["provisioningState"] == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{location} never reached {state}: {r}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// SIGKILL, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Bytes of the files under `dir` whose names start with `prefix`.
pub fn file_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
