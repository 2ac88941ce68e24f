//! A release `kubeinvoke serve` process under test: started on a loopback port with its own
//! data directory, reached over HTTPS with the CA it generated, measured through `/proc`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const API: &str = "2024-09-01";

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
        let log = std::fs::OpenOptions::new().create(true).append(true).open(launch.data_dir.join("../server.log"))?;
        let mut child = Command::new(kubeinvoke_binary()?)
            .arg("serve")
            .arg("--data-dir")
            .arg(&launch.data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(&launch.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting kubeinvoke serve")?;
        let stdout = child.stdout.take().expect("piped");
        let (found, banner) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("listening on") {
                    let _ = found.send(url.trim().to_string());
                }
            }
        });
        let base = tokio::task::spawn_blocking(move || banner.recv_timeout(Duration::from_secs(60)))
            .await?
            .context("the server did not start (see server.log)")?;
        let ca = std::fs::read(launch.data_dir.join("tls/ca.pem"))?;
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .pool_max_idle_per_host(256)
            .build()?;
        let mut target =
            Target { child: Some(child), base, data_dir: launch.data_dir.clone(), token: String::new(), client };
        if let Ok(admin) = std::fs::read(launch.data_dir.join("bootstrap-admin.json")) {
            target.token = target.issue_token(&serde_json::from_slice(&admin)?).await?;
        }
        Ok(target)
    }

    async fn issue_token(&self, admin: &Value) -> anyhow::Result<String> {
        let tenant = admin["tenant"].as_str().context("tenant")?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", admin["appId"].as_str().context("appId")?),
            ("client_secret", admin["password"].as_str().context("password")?),
            ("scope", "https://management.azure.com/.default"),
        ];
        let reply: Value = self
            .client
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(&form)
            .send()
            .await?
            .json()
            .await?;
        Ok(reply["access_token"].as_str().context("no access_token")?.to_string())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
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

pub fn cluster_path(group: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}")
}

/// The release `kubeinvoke` beside this benchmark binary.
pub fn kubeinvoke_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("kubeinvoke");
    if !path.exists() {
        bail!("{} is missing: build it with `cargo build --release -p kubeinvoke`", path.display());
    }
    Ok(path)
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
