//! Where the client connects and as whom: URL and CA (flags > `KUBEINVOKE_*` > the last login's
//! server > a local server on the defaults), the subscription, and the login.
//!
//! `kubeinvoke login` keeps the server it was for, its CA, the client credentials and the cached
//! token in 0600 files under `~/.config/kubeinvoke/`; the token is refreshed a few minutes before
//! it expires.

use crate::arm::wire::{OAuthError, TokenResponse};
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::exit::{ClientError, describe};
use crate::config::default_data_dir;
use crate::files::{create_private_dir, write_private};
use crate::time::now_millis;

pub(crate) const DEFAULT_URL: &str = "https://127.0.0.1:8443";
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
pub(crate) fn config_dir() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("kubeinvoke"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".config/kubeinvoke"),
    }
}

/// Credentials saved by `kubeinvoke login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedLogin {
    pub url: String,
    /// The CA the login trusted for `url` (none: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
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
    /// Where `url` came from, for `kubeinvoke login --show`.
    pub url_from: Source,
    pub ca: Option<PathBuf>,
    /// The saved login, when it is for `url`.
    pub login: Option<SavedLogin>,
    pub http: reqwest::Client,
    pub subscription: Option<String>,
}

/// Which setting decided the server a command talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--url` or `KUBEINVOKE_URL`.
    FlagOrEnvironment,
    /// The last `kubeinvoke login`.
    Login,
    /// Nothing said otherwise: a local server on the defaults.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::FlagOrEnvironment => "--url or KUBEINVOKE_URL",
            Source::Login => "the last `kubeinvoke login`",
            Source::Default => "the default",
        })
    }
}

impl Connection {
    pub fn resolve(&self) -> Result<Resolved, ClientError> {
        let saved = saved_login()?;
        let (url, url_from) = match (&self.url, &saved) {
            (Some(url), _) => (url.clone(), Source::FlagOrEnvironment),
            (None, Some(saved)) => (saved.url.clone(), Source::Login),
            (None, None) => (DEFAULT_URL.to_string(), Source::Default),
        };
        let url = url.trim_end_matches('/').to_string();
        let login = saved.filter(|s| s.url == url);
        let ca = self.ca.clone().or_else(|| {
            // The CA the login trusted, while talking to the server it was for.
            login.as_ref().and_then(|s| s.ca.clone()).or_else(|| {
                let local = default_data_dir().join("tls/ca.pem");
                (url == DEFAULT_URL && local.exists()).then_some(local)
            })
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
        Ok(Resolved { url, url_from, ca, login, http, subscription: self.subscription.clone() })
    }
}

/// The last login, if any.
fn saved_login() -> Result<Option<SavedLogin>, ClientError> {
    match std::fs::read(login_path()) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::local(format!("{}: {e}", login_path().display()))),
        Err(_) => Ok(None),
    }
}

fn login_path() -> PathBuf {
    config_dir().join("login.json")
}

fn token_path() -> PathBuf {
    config_dir().join("token.json")
}

pub(crate) fn save_login(login: &SavedLogin) -> Result<PathBuf, ClientError> {
    let dir = config_dir();
    create_private_dir(&dir).map_err(ClientError::local)?;
    let path = login_path();
    write_private(&path, &serde_json::to_vec_pretty(login).expect("serialisable")).map_err(ClientError::local)?;
    let _ = std::fs::remove_file(token_path());
    Ok(path)
}

/// The saved login for this server, else the bootstrap admin of a local server on the defaults.
fn login_for(resolved: &Resolved) -> Result<SavedLogin, ClientError> {
    let url = &resolved.url;
    if let Some(saved) = &resolved.login {
        return Ok(saved.clone());
    }
    local_admin(&default_data_dir(), url).ok_or_else(|| {
        ClientError::Auth(format!(
            "not logged in to {url}: run `kubeinvoke login --url {url} --app-id … --password … --tenant …`"
        ))
    })
}

/// The bootstrap admin of a local server with this data directory, readable when this user
/// started it.
pub(crate) fn local_admin(data_dir: &std::path::Path, url: &str) -> Option<SavedLogin> {
    let bytes = std::fs::read(data_dir.join(crate::identity::BOOTSTRAP_FILE)).ok()?;
    let admin: crate::identity::Credentials = serde_json::from_slice(&bytes).ok()?;
    Some(SavedLogin {
        url: url.to_string(),
        ca: None,
        app_id: admin.app_id,
        password: admin.password,
        tenant: admin.tenant,
    })
}

/// A valid ARM token: the cached one, or a fresh one from the server's issuer.
pub(crate) async fn token(resolved: &Resolved) -> Result<String, ClientError> {
    let now = now_millis() / 1000;
    if let Ok(bytes) = std::fs::read(token_path()) {
        if let Ok(cached) = serde_json::from_slice::<CachedToken>(&bytes) {
            if cached.url == resolved.url && cached.expires_on - REFRESH_MARGIN_SECONDS > now {
                return Ok(cached.access_token);
            }
        }
    }
    let login = login_for(resolved)?;
    let (access_token, expires_in) = request_token(resolved, &login).await?;
    let cached =
        CachedToken { url: resolved.url.clone(), access_token: access_token.clone(), expires_on: now + expires_in };
    if create_private_dir(&config_dir()).is_ok() {
        let _ = write_private(&token_path(), &serde_json::to_vec(&cached).expect("serialisable"));
    }
    Ok(access_token)
}

pub(crate) async fn request_token(resolved: &Resolved, login: &SavedLogin) -> Result<(String, i64), ClientError> {
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
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let reason = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| if e.error_description.is_empty() { e.error.into_owned() } else { e.error_description })
            .unwrap_or_else(|_| "refused".to_string());
        return Err(ClientError::Auth(format!("login failed ({status}): {reason}")));
    }
    let token: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Auth(format!("the token response is not one this client reads: {e}")))?;
    Ok((token.access_token, token.expires_in))
}
