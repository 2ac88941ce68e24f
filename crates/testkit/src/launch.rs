//! Starting a `kubeinvoke serve` process: the one launcher the tests' [`crate::harness::Server`]
//! and the benchmark's target share. The server listens on a free loopback port of its own data
//! directory, prints a banner on stdout (its URL, then its tenant last) and logs to a file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a server may take to print its banner (a cold PostgreSQL migration, a slow CI box).
const STARTUP: Duration = Duration::from_secs(60);

/// A `serve` to start.
pub struct Launch<'a> {
    pub data_dir: &'a Path,
    /// Flags after `serve --data-dir … --listen 127.0.0.1:0`.
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    /// Where the server's stderr (its log) is appended.
    pub log: &'a Path,
    /// The test host it runs on (its network namespace and address); `None`: this host's loopback.
    pub host: Option<&'a crate::network::TestHost>,
}

/// A server that printed its banner.
pub struct Started {
    pub child: Child,
    /// `https://127.0.0.1:port` (or `http://` when TLS is off).
    pub base: String,
    /// What it printed at startup.
    pub banner: String,
}

/// The `kubeinvoke` binary of this build: `KUBEINVOKE_BINARY` if set, else the one cargo built
/// beside the running test (`target/<profile>/deps/…`) or benchmark (`target/<profile>/…`).
pub fn kubeinvoke_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KUBEINVOKE_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().context("the executable has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let path = dir.join("kubeinvoke");
    if !path.is_file() {
        bail!("{} is missing: build it with `cargo build -p kubeinvoke` (add --release for the bench)", path.display());
    }
    Ok(path)
}

/// Starts the server and waits for its banner; an early exit is reported at once, with its log.
pub async fn start(launch: Launch<'_>) -> anyhow::Result<Started> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log)
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let mut command = match launch.host {
        Some(host) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &host.netns]).arg(kubeinvoke_binary()?).arg("serve");
            command.args(["--listen", &format!("{}:0", host.address), "--hostname", &host.address]);
            command
        }
        None => {
            let mut command = Command::new(kubeinvoke_binary()?);
            command.args(["serve", "--listen", "127.0.0.1:0"]);
            command
        }
    };
    // `ip netns exec` execs the server, so the child is the server itself.
    let mut child = command
        .arg("--data-dir")
        .arg(launch.data_dir)
        .args(launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting kubeinvoke serve")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let (found, banner) = std::sync::mpsc::channel();
    // Keep reading stdout for the server's whole life, so it never writes to a closed pipe.
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let last = line.trim_start().starts_with("tenant");
            lines.push(line);
            if last {
                let _ = found.send(lines.join("\n"));
            }
        }
    });
    let banner = tokio::task::spawn_blocking(move || banner.recv_timeout(STARTUP)).await?;
    let banner = match banner {
        Ok(banner) => banner,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(launch.log).unwrap_or_default();
            let why = match why {
                std::sync::mpsc::RecvTimeoutError::Timeout => format!("no banner within {STARTUP:?}"),
                std::sync::mpsc::RecvTimeoutError::Disconnected => "it exited".to_string(),
            };
            bail!("the server did not start ({why}); its log:\n{log}");
        }
    };
    let base = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("listening on"))
        .context("the banner names no URL")?
        .trim()
        .to_string();
    Ok(Started { child, base, banner })
}

/// A client that trusts only the CA at `ca` (the one a server generated, or the test's own).
pub fn https_client(ca: &Path) -> anyhow::Result<reqwest::ClientBuilder> {
    let pem = std::fs::read(ca).with_context(|| format!("reading the CA {}", ca.display()))?;
    Ok(reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem)?]))
}

/// A principal's ARM token from the server's own token endpoint (client credentials).
pub async fn token(
    client: &reqwest::Client,
    base: &str,
    who: &crate::harness::Credentials,
    scope: &str,
) -> anyhow::Result<String> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", who.app_id.as_str()),
        ("client_secret", who.password.as_str()),
        ("scope", scope),
    ];
    let response = client.post(format!("{base}/{}/oauth2/v2.0/token", who.tenant)).form(&form).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_string()),
        _ => bail!("token: {status} {body}"),
    }
}

/// A memory figure of a process, in bytes, from `/proc/{pid}/status` (`VmRSS:`, `RssAnon:`, …);
/// 0 when the process or the field is gone.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}
