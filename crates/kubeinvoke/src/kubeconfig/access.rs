//! How the server itself reaches a tenant's cluster: an allow-list read of the kubeconfig.
//!
//! A kubeconfig is a program's configuration, not data: `exec` and `auth-provider` start
//! programs, `tokenFile`, `client-certificate` and `certificate-authority` read local files,
//! `proxy-url` sends traffic elsewhere. A kubeconfig is written by whoever may write the
//! cluster, so the server (root) must never interpret it beyond plain data (ARCHITECTURE.md).
//! [`ClusterAccess`] keeps exactly the server URL, inline CA data, the TLS server name, an inline
//! bearer token and an inline client certificate and key of the selected context — each checked
//! so that it can reach a header or a TLS handshake without surprise — and refuses any other
//! field, naming it. Commands that run on the local executor still get the whole kubeconfig: there
//! kubectl interprets it inside the command's sandbox, as the command's own uid.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_yaml_ng::{Mapping, Value};

/// What the server may use of a cluster's kubeconfig to reach its API server.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClusterAccess {
    /// `clusters[].cluster.server`: an http or https URL with a host.
    pub server: axum::http::Uri,
    /// `certificate-authority-data`, as DER certificates (empty: the system roots).
    pub ca_certificates: Vec<Vec<u8>>,
    /// `tls-server-name`: the name the API server's certificate must carry.
    pub tls_server_name: Option<String>,
    /// `users[].user.token`: visible ASCII only, so it is always a valid header value.
    pub token: Option<String>,
    /// `client-certificate-data` and `client-key-data`, as PEM.
    pub client_identity: Option<ClientIdentity>,
}

/// A client certificate chain and its key, both PEM, both checked to parse.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    pub certificate_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClusterAccess {
    /// Never prints the token or the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("server", &self.server)
            .field("ca_certificates", &self.ca_certificates.len())
            .field("tls_server_name", &self.tls_server_name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_identity", &self.client_identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a kubeconfig cannot be used by the server itself; `field` is the path of the offending
/// field in the document (`users[0].user.exec`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnusableKubeconfig {
    #[error(
        "{field} is not allowed for commands that run as Pods: the server never runs a program, reads a local \
         file or takes a proxy from a kubeconfig (it uses only server, certificate-authority-data, \
         tls-server-name, token, client-certificate-data and client-key-data); register the cluster with \
         inline credentials, or run its commands on the local executor, where kubectl may use it"
    )]
    NotAllowed { field: String },
    #[error("{field} is invalid: {why}")]
    Invalid { field: String, why: String },
    #[error("it is not a kubeconfig document: {0}")]
    Syntax(String),
    #[error("{0}")]
    Structure(&'static str),
}

#[cfg(test)]
impl UnusableKubeconfig {
    /// The offending field, when one is to blame.
    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            Self::NotAllowed { field } | Self::Invalid { field, .. } => Some(field),
            Self::Syntax(_) | Self::Structure(_) => None,
        }
    }
}

const CLUSTER_FIELDS: [&str; 4] = ["server", "certificate-authority-data", "tls-server-name", "extensions"];
const USER_FIELDS: [&str; 4] = ["token", "client-certificate-data", "client-key-data", "extensions"];
const CONTEXT_FIELDS: [&str; 4] = ["cluster", "user", "namespace", "extensions"];

impl ClusterAccess {
    /// Reads the selected context (the current one; else the only one) of a kubeconfig through
    /// the allow-list. Nothing in it is acted on: no file is opened, no program started.
    pub(crate) fn from_kubeconfig(document: &[u8]) -> Result<Self, UnusableKubeconfig> {
        let config: Value =
            serde_yaml_ng::from_slice(document).map_err(|e| UnusableKubeconfig::Syntax(e.to_string()))?;
        let sequence = |key: &str| config.get(key).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[]);
        let (contexts, clusters, users) = (sequence("contexts"), sequence("clusters"), sequence("users"));
        let context = match config.get("current-context").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(name) => Some(
                find(contexts, name)
                    .ok_or(UnusableKubeconfig::Structure("its current-context names no context in it"))?,
            ),
            None if contexts.len() == 1 => Some((0, &contexts[0])),
            None if contexts.is_empty() => None,
            None => return Err(UnusableKubeconfig::Structure("it has several contexts and no current-context")),
        };
        let (cluster, user) = match context {
            Some((index, entry)) => {
                let inner = entry_map(entry, "context", &format!("contexts[{index}]"))?;
                only_allowed(inner, &CONTEXT_FIELDS, &format!("contexts[{index}].context"))?;
                let cluster = named_in(inner, "cluster", clusters, "its context names a cluster that is not in it")?;
                let user = named_in(inner, "user", users, "its context names a user that is not in it")?;
                (cluster.ok_or(UnusableKubeconfig::Structure("its context names no cluster"))?, user)
            }
            None => {
                (clusters.first().map(|c| (0, c)).ok_or(UnusableKubeconfig::Structure("it names no cluster"))?, None)
            }
        };
        let mut access = read_cluster(cluster)?;
        if let Some(user) = user {
            read_user(user, &mut access)?;
        }
        Ok(access)
    }
}

/// The entry of `list` that the context's `key` names, if it names one.
fn named_in<'a>(
    context: &Mapping,
    key: &str,
    list: &'a [Value],
    missing: &'static str,
) -> Result<Option<(usize, &'a Value)>, UnusableKubeconfig> {
    context
        .get(key)
        .and_then(Value::as_str)
        .map(|name| find(list, name).ok_or(UnusableKubeconfig::Structure(missing)))
        .transpose()
}

/// The entry named `name` in a list of `{name, <kind>}` entries, with its index.
fn find<'a>(list: &'a [Value], name: &str) -> Option<(usize, &'a Value)> {
    list.iter().enumerate().find(|(_, e)| e.get("name").and_then(Value::as_str) == Some(name))
}

fn entry_map<'a>(entry: &'a Value, key: &str, at: &str) -> Result<&'a Mapping, UnusableKubeconfig> {
    match entry.get(key) {
        Some(Value::Mapping(map)) => Ok(map),
        None | Some(Value::Null) => {
            static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
            Ok(EMPTY.get_or_init(Mapping::new))
        }
        Some(_) => Err(invalid(format!("{at}.{key}"), "it must be a mapping")),
    }
}

/// Refuses the first field of `map` that is not in `allowed` (and is not null).
fn only_allowed(map: &Mapping, allowed: &[&str], at: &str) -> Result<(), UnusableKubeconfig> {
    for (key, value) in map {
        let key = key.as_str().unwrap_or("<a non-string key>");
        if !allowed.contains(&key) && !value.is_null() {
            return Err(UnusableKubeconfig::NotAllowed { field: format!("{at}.{key}") });
        }
    }
    Ok(())
}

fn invalid(field: String, why: impl Into<String>) -> UnusableKubeconfig {
    UnusableKubeconfig::Invalid { field, why: why.into() }
}

fn string<'a>(map: &'a Mapping, key: &str, at: &str) -> Result<Option<&'a str>, UnusableKubeconfig> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{at}.{key}"), "it must be a string")),
    }
}

fn read_cluster((index, entry): (usize, &Value)) -> Result<ClusterAccess, UnusableKubeconfig> {
    let at = format!("clusters[{index}].cluster");
    let map = entry_map(entry, "cluster", &format!("clusters[{index}]"))?;
    only_allowed(map, &CLUSTER_FIELDS, &at)?;
    let field = |key: &str| format!("{at}.{key}");
    let server_text = string(map, "server", &at)?.ok_or_else(|| invalid(field("server"), "it is missing"))?;
    let server: axum::http::Uri = server_text.parse().map_err(|_| invalid(field("server"), "it is not a URL"))?;
    if !matches!(server.scheme_str(), Some("https" | "http")) || server.host().is_none_or(str::is_empty) {
        return Err(invalid(field("server"), "it must be an https:// (or http://) URL with a host"));
    }
    let ca_certificates = match string(map, "certificate-authority-data", &at)? {
        None => Vec::new(),
        Some(data) => certificates(&decode(data, &field("certificate-authority-data"))?)
            .map_err(|why| invalid(field("certificate-authority-data"), why))?,
    };
    let tls_server_name = string(map, "tls-server-name", &at)?
        .map(|name| {
            ServerName::try_from(name.to_string())
                .map(|_| name.to_string())
                .map_err(|_| invalid(field("tls-server-name"), "it is not a DNS name or IP address"))
        })
        .transpose()?;
    Ok(ClusterAccess { server, ca_certificates, tls_server_name, token: None, client_identity: None })
}

fn read_user((index, entry): (usize, &Value), access: &mut ClusterAccess) -> Result<(), UnusableKubeconfig> {
    let at = format!("users[{index}].user");
    let map = entry_map(entry, "user", &format!("users[{index}]"))?;
    only_allowed(map, &USER_FIELDS, &at)?;
    let field = |key: &str| format!("{at}.{key}");
    if let Some(token) = string(map, "token", &at)? {
        check_token(token).map_err(|why| invalid(field("token"), why))?;
        access.token = Some(token.to_string());
    }
    let certificate = string(map, "client-certificate-data", &at)?;
    let key = string(map, "client-key-data", &at)?;
    access.client_identity = match (certificate, key) {
        (None, None) => None,
        (Some(certificate), Some(key)) => {
            let certificate_pem = decode(certificate, &field("client-certificate-data"))?;
            certificates(&certificate_pem).map_err(|why| invalid(field("client-certificate-data"), why))?;
            let key_pem = decode(key, &field("client-key-data"))?;
            PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| invalid(field("client-key-data"), "it holds no PEM private key"))?;
            Some(ClientIdentity { certificate_pem, key_pem })
        }
        (Some(_), None) => {
            return Err(invalid(field("client-key-data"), "it is missing beside client-certificate-data"));
        }
        (None, Some(_)) => {
            return Err(invalid(field("client-certificate-data"), "it is missing beside client-key-data"));
        }
    };
    Ok(())
}

/// A bearer token that can be sent as `Authorization: Bearer <token>` as it is: visible ASCII,
/// no spaces or control characters (a newline would split the header), bounded in length.
fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("it is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err("it is longer than 16 KiB");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it holds a character that cannot be sent in an HTTP header (only visible ASCII is allowed)");
    }
    Ok(())
}

const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn decode(data: &str, field: &str) -> Result<Vec<u8>, UnusableKubeconfig> {
    crate::context::decode_base64(data).map_err(|_| invalid(field.to_string(), "it is not base64"))
}

/// The DER certificates of a PEM bundle: at least one, each one that rustls accepts as a root.
fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut found = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|_| "it is not a PEM certificate bundle")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate.clone()).map_err(|_| "it holds a certificate that cannot be parsed")?;
        found.push(certificate.to_vec());
    }
    if found.is_empty() {
        return Err("it holds no PEM certificate");
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
