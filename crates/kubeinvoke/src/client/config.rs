//! Where the client connects and as whom: URL, CA and subscription (flags > `KUBEINVOKE_*` >
//! `~/.config/kubeinvoke/config.toml` > a local server on the defaults), and the login.
//!
//! `kubeinvoke login` keeps the client credentials and the cached token in 0600 files under
//! `~/.config/kubeinvoke/`, and the token is refreshed a few minutes before it expires.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::exit::{ClientError, describe};
use crate::config::default_data_dir;
use crate::files::{create_private_dir, write_private};
use crate::time::now_millis;

pub const DEFAULT_URL: &str = "https://127.0.0.1:8443";
/// Refresh a cached token this long before it expires.
const REFRESH_MARGIN_SECONDS: i64 = 300;

#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's base URL [default: https://127.0.0.1:8443].
    #[arg(long, env = "KUBEINVOKE_URL", global = true)]
    pub url: Option<String>,
    /// The CA (PEM) to trust [default: the local server's, when there is one].
    #[arg(long, env = "KUBEINVOKE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The subscription [default: the first the server lists].
    #[arg(long, env = "KUBEINVOKE_SUBSCRIPTION", global = true)]
    pub subscription: Option<String>,
}

/// `~/.config/kubeinvoke` (or `$XDG_CONFIG_HOME/kubeinvoke`).
pub fn config_dir() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("kubeinvoke"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".config/kubeinvoke"),
    }
}

/// Makes the config file's keys available as `KUBEINVOKE_*` defaults, so the precedence is
/// flags > environment > file. Top-level keys are the client's (`url`, `ca`, `subscription`);
/// the `[serve]` table holds `kubeinvoke serve` flags by their long names.
pub fn apply_config_file(args: &[String]) -> Result<(), String> {
    let explicit = args.windows(2).find(|w| w[0] == "--config").map(|w| PathBuf::from(&w[1]));
    let path = explicit
        .clone()
        .or_else(|| std::env::var_os("KUBEINVOKE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| config_dir().join("config.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let serving = args.get(1).is_some_and(|a| a == "serve");
    let mut pairs = Vec::new();
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("serve", toml::Value::Table(serve)) if serving => pairs.extend(serve.iter()),
            ("serve", _) => {}
            _ if !serving => pairs.push((key, value)),
            _ => {}
        }
    }
    let known = known_settings(serving);
    if let Some((unknown, _)) = pairs.iter().find(|(key, _)| !known.iter().any(|k| k == *key)) {
        return Err(format!("{}: unknown setting {unknown:?} (known: {})", path.display(), known.join(", ")));
    }
    for (key, value) in pairs {
        let name = format!("KUBEINVOKE_{}", key.to_ascii_uppercase().replace('-', "_"));
        let text = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
            other => scalar(other),
        };
        if std::env::var_os(&name).is_none() {
            // SAFETY: called first thing in main, before any thread exists.
            unsafe { std::env::set_var(name, text) };
        }
    }
    Ok(())
}

/// The settings a config file may name: `serve`'s long flags, or the client's connection.
fn known_settings(serving: bool) -> Vec<String> {
    use clap::CommandFactory;
    if !serving {
        return ["url", "ca", "subscription"].map(String::from).to_vec();
    }
    let cli = crate::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve exists");
    serve.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "config").map(String::from).collect()
}

/// A TOML scalar as a flag value.
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => String::new(),
    }
}

/// Credentials saved by `kubeinvoke login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedLogin {
    pub url: String,
    pub app_id: String,
    pub password: String,
    pub tenant: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedToken {
    url: String,
    access_token: String,
    /// Unix seconds.
    expires_on: i64,
}

/// Everything needed to make calls.
pub struct Resolved {
    pub url: String,
    pub http: reqwest::Client,
    pub subscription: Option<String>,
}

impl Connection {
    pub fn resolve(&self) -> Result<Resolved, ClientError> {
        let url = self.url.clone().unwrap_or_else(|| DEFAULT_URL.to_string()).trim_end_matches('/').to_string();
        let ca = self.ca.clone().or_else(|| {
            let local = default_data_dir().join("tls/ca.pem");
            (url == DEFAULT_URL && local.exists()).then_some(local)
        });
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &ca {
            let pem =
                std::fs::read(ca).map_err(|e| ClientError::local(format!("reading the CA {}: {e}", ca.display())))?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ClientError::local(format!("{} is not a PEM certificate: {}", ca.display(), describe(&e)))
            })?;
            builder = builder.tls_certs_only([certificate]);
        }
        let http = builder.build().map_err(|e| ClientError::local(describe(&e)))?;
        Ok(Resolved { url, http, subscription: self.subscription.clone() })
    }
}

fn login_path() -> PathBuf {
    config_dir().join("login.json")
}

fn token_path() -> PathBuf {
    config_dir().join("token.json")
}

pub fn save_login(login: &SavedLogin) -> Result<PathBuf, ClientError> {
    let dir = config_dir();
    create_private_dir(&dir).map_err(ClientError::local)?;
    let path = login_path();
    write_private(&path, &serde_json::to_vec_pretty(login).expect("serialisable")).map_err(ClientError::local)?;
    let _ = std::fs::remove_file(token_path());
    Ok(path)
}

/// The saved login for this server, else the bootstrap admin of a local server on the defaults.
fn login_for(url: &str) -> Result<SavedLogin, ClientError> {
    if let Ok(bytes) = std::fs::read(login_path()) {
        let saved: SavedLogin = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::local(format!("{}: {e}", login_path().display())))?;
        if saved.url == url {
            return Ok(saved);
        }
    }
    local_admin(url).ok_or_else(|| {
        ClientError::Auth(format!(
            "not logged in to {url}: run `kubeinvoke login --url {url} --app-id … --password … --tenant …`"
        ))
    })
}

/// The bootstrap admin of the local server, readable when this user started it.
pub fn local_admin(url: &str) -> Option<SavedLogin> {
    let bytes = std::fs::read(default_data_dir().join(crate::identity::BOOTSTRAP_FILE)).ok()?;
    let admin: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(SavedLogin {
        url: url.to_string(),
        app_id: admin["appId"].as_str()?.to_string(),
        password: admin["password"].as_str()?.to_string(),
        tenant: admin["tenant"].as_str()?.to_string(),
    })
}

/// A valid ARM token: the cached one, or a fresh one from the server's issuer.
pub async fn token(resolved: &Resolved) -> Result<String, ClientError> {
    let now = now_millis() / 1000;
    if let Ok(bytes) = std::fs::read(token_path()) {
        if let Ok(cached) = serde_json::from_slice::<CachedToken>(&bytes) {
            if cached.url == resolved.url && cached.expires_on - REFRESH_MARGIN_SECONDS > now {
                return Ok(cached.access_token);
            }
        }
    }
    let login = login_for(&resolved.url)?;
    let (access_token, expires_in) = request_token(resolved, &login).await?;
    let cached =
        CachedToken { url: resolved.url.clone(), access_token: access_token.clone(), expires_on: now + expires_in };
    if create_private_dir(&config_dir()).is_ok() {
        let _ = write_private(&token_path(), &serde_json::to_vec(&cached).expect("serialisable"));
    }
    Ok(access_token)
}

pub async fn request_token(resolved: &Resolved, login: &SavedLogin) -> Result<(String, i64), ClientError> {
    let endpoint = format!("{}/{}/oauth2/v2.0/token", resolved.url, login.tenant);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", login.app_id.as_str()),
        ("client_secret", login.password.as_str()),
        ("scope", "https://management.azure.com/.default"),
    ];
    let response = resolved
        .http
        .post(&endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable { url: resolved.url.clone(), cause: describe(&e) })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let reason = body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("refused");
        return Err(ClientError::Auth(format!("login failed ({status}): {reason}")));
    }
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| ClientError::Auth("the token response has no access_token".into()))?;
    Ok((token.to_string(), body["expires_in"].as_i64().unwrap_or(3600)))
}
