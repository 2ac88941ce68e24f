//! Just enough of a kubeconfig to know which API server it points at, and ([`access`]) the
//! allow-list through which the server itself may use one.

mod access;

use serde::Deserialize;

pub(crate) use access::{ClusterAccess, UnusableKubeconfig};

#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeconfigError {
    #[error("it is not a kubeconfig document: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    #[error("it names no cluster with a server URL")]
    NoServer,
    #[error("its server URL {0:?} has no host")]
    BadServer(String),
    #[error("it has no context {}", .0.as_deref().map(|c| format!("named {c:?}")).unwrap_or_else(|| "selected (no current-context)".into()))]
    NoContext(Option<String>),
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextRef,
}

#[derive(Deserialize)]
struct ContextRef {
    cluster: String,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: Option<String>,
}

/// The API server URL of the current context (or of the only/first cluster when there is none).
pub(crate) fn server_url(document: &[u8]) -> Result<String, KubeconfigError> {
    let config: Kubeconfig = serde_yaml_ng::from_slice(document)?;
    let current_cluster = config
        .current_context
        .as_ref()
        .and_then(|name| config.contexts.iter().find(|c| &c.name == name))
        .map(|c| c.context.cluster.as_str());
    let cluster = match current_cluster {
        Some(name) => config.clusters.iter().find(|c| c.name == name),
        None => config.clusters.first(),
    };
    cluster.and_then(|c| c.cluster.server.clone()).ok_or(KubeconfigError::NoServer)
}

/// The host part of the server URL: what AKS reports as `properties.fqdn`.
pub(crate) fn fqdn(document: &[u8]) -> Result<String, KubeconfigError> {
    let url = server_url(document)?;
    let uri: axum::http::Uri = url.parse().map_err(|_| KubeconfigError::BadServer(url.clone()))?;
    let host = uri.host().ok_or_else(|| KubeconfigError::BadServer(url.clone()))?;
    Ok(host.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// Just one context of a kubeconfig (the current one when `context` is `None`), with its cluster
/// and user: what `kubeinvoke cluster create` registers.
pub(crate) fn minify(document: &[u8], context: Option<&str>) -> Result<Vec<u8>, KubeconfigError> {
    use serde_yaml_ng::{Mapping, Value};
    let config: Value = serde_yaml_ng::from_slice(document)?;
    let name = context
        .map(str::to_string)
        .or_else(|| config.get("current-context").and_then(Value::as_str).map(str::to_string))
        .ok_or(KubeconfigError::NoContext(None))?;
    let named = |list: &str, wanted: &str| -> Option<Value> {
        config.get(list)?.as_sequence()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(wanted)).cloned()
    };
    let context_entry = named("contexts", &name).ok_or_else(|| KubeconfigError::NoContext(Some(name.clone())))?;
    let field =
        |key: &str| context_entry.get("context").and_then(|c| c.get(key)).and_then(Value::as_str).map(str::to_string);
    let cluster = field("cluster").and_then(|c| named("clusters", &c)).ok_or(KubeconfigError::NoServer)?;
    let user = field("user").and_then(|u| named("users", &u));
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert("current-context".into(), name.clone().into());
    out.insert("clusters".into(), Value::Sequence(vec![cluster]));
    out.insert("contexts".into(), Value::Sequence(vec![context_entry]));
    out.insert("users".into(), Value::Sequence(user.into_iter().collect()));
    let text = serde_yaml_ng::to_string(&Value::Mapping(out))?;
    server_url(text.as_bytes())?;
    Ok(text.into_bytes())
}

/// The same kubeconfig with every context using one user that authenticates with `token`:
/// the command then acts as the caller, and the cluster's RBAC sees the caller.
pub(crate) fn with_bearer_token(document: &[u8], token: &str) -> Result<Vec<u8>, KubeconfigError> {
    let mut user = serde_yaml_ng::Mapping::new();
    user.insert("token".into(), token.into());
    with_only_user(document, "kubeinvoke-caller", user)
}

/// The same kubeconfig with a client certificate and key (PEM) as its only user: what a `runAs`
/// command gets, with nothing of the registered credential left in it.
pub(crate) fn with_client_certificate(
    document: &[u8],
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<u8>, KubeconfigError> {
    use base64::Engine;
    let encode = |pem: &[u8]| base64::engine::general_purpose::STANDARD.encode(pem);
    let mut user = serde_yaml_ng::Mapping::new();
    user.insert("client-certificate-data".into(), encode(certificate_pem).into());
    user.insert("client-key-data".into(), encode(key_pem).into());
    with_only_user(document, "kubeinvoke-run-as", user)
}

/// The same kubeconfig with `user` (named `name`) as its only user, used by every context.
fn with_only_user(document: &[u8], name: &str, user: serde_yaml_ng::Mapping) -> Result<Vec<u8>, KubeconfigError> {
    use serde_yaml_ng::{Mapping, Value};
    let mut config: Value = serde_yaml_ng::from_slice(document)?;
    let Some(map) = config.as_mapping_mut() else { return Err(KubeconfigError::NoServer) };
    let mut entry = Mapping::new();
    entry.insert("name".into(), name.into());
    entry.insert("user".into(), Value::Mapping(user));
    map.insert("users".into(), Value::Sequence(vec![Value::Mapping(entry)]));
    if let Some(Value::Sequence(contexts)) = map.get_mut("contexts") {
        for context in contexts.iter_mut() {
            if let Some(inner) = context.get_mut("context").and_then(Value::as_mapping_mut) {
                inner.insert("user".into(), name.into());
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&config)?.into_bytes())
}

/// The same kubeconfig with every user replaced by one that logs in to Entra ID through
/// kubelogin for the AKS AAD server application, as AKS's user credential of an AAD cluster
/// has it: no token, key or password of the stored document is left in it.
pub(crate) fn with_aad_login(document: &[u8], user: &str, tenant: &str) -> Result<Vec<u8>, KubeconfigError> {
    use serde_yaml_ng::{Mapping, Value};
    let args: Vec<Value> = [
        "get-token",
        "--environment",
        "AzurePublicCloud",
        "--server-id",
        crate::azure::AKS_AAD_SERVER_APP,
        "--client-id",
        crate::azure::AZURE_CLI_CLIENT_ID,
        "--tenant-id",
        tenant,
        "--login",
        "devicecode",
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    let mut exec = Mapping::new();
    exec.insert("apiVersion".into(), "client.authentication.k8s.io/v1beta1".into());
    exec.insert("command".into(), "kubelogin".into());
    exec.insert("args".into(), Value::Sequence(args));
    exec.insert("env".into(), Value::Null);
    exec.insert("provideClusterInfo".into(), false.into());
    exec.insert(
        "installHint".into(),
        "kubelogin is not installed which is required to connect to AAD enabled cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n".into(),
    );
    let mut login = Mapping::new();
    login.insert("exec".into(), Value::Mapping(exec));
    with_only_user(document, user, login)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: second
clusters:
- name: one
  cluster: {server: "https://one.example:6443"}
- name: two
  cluster:
    server: https://my-aks.hcp.westeurope.azmk8s.io:443
contexts:
- name: first
  context: {cluster: one, user: u}
- name: second
  context: {cluster: two, user: u}
users: []
"#;

    #[test]
    fn follows_the_current_context() {
        assert_eq!(fqdn(CONFIG.as_bytes()).unwrap(), "my-aks.hcp.westeurope.azmk8s.io");
    }

    #[test]
    fn bearer_token_replaces_the_users() {
        let rewritten = with_bearer_token(CONFIG.as_bytes(), "caller-token").unwrap();
        let text = String::from_utf8(rewritten.clone()).unwrap();
        assert!(text.contains("token: caller-token"), "{text}");
        assert_eq!(text.matches("user: kubeinvoke-caller").count(), 2, "{text}");
        assert_eq!(fqdn(&rewritten).unwrap(), "my-aks.hcp.westeurope.azmk8s.io");
    }

    #[test]
    fn the_aad_login_replaces_every_secret() {
        let secret = CONFIG.replace("users: []", "users:\n- name: u\n  user: {token: static-admin-secret}\n");
        let rewritten =
            String::from_utf8(with_aad_login(secret.as_bytes(), "clusterUser_rg_c", "tenant-1").unwrap()).unwrap();
        assert!(!rewritten.contains("static-admin-secret"), "{rewritten}");
        assert!(rewritten.contains("kubelogin") && rewritten.contains(crate::azure::AKS_AAD_SERVER_APP));
        assert!(rewritten.contains("tenant-1"), "{rewritten}");
        assert_eq!(rewritten.matches("user: clusterUser_rg_c").count(), 2, "{rewritten}");
        assert_eq!(fqdn(rewritten.as_bytes()).unwrap(), "my-aks.hcp.westeurope.azmk8s.io");
    }

    #[test]
    fn minify_keeps_one_context() {
        let one = String::from_utf8(minify(CONFIG.as_bytes(), Some("first")).unwrap()).unwrap();
        assert!(one.contains("one.example") && !one.contains("azmk8s"), "{one}");
        assert_eq!(fqdn(&minify(CONFIG.as_bytes(), None).unwrap()).unwrap(), "my-aks.hcp.westeurope.azmk8s.io");
        assert!(minify(CONFIG.as_bytes(), Some("missing")).is_err());
    }

    #[test]
    fn handles_ip_servers_and_garbage() {
        let v6 = "clusters:\n- name: c\n  cluster: {server: \"https://[::1]:6443\"}\n";
        assert_eq!(fqdn(v6.as_bytes()).unwrap(), "::1");
        assert!(fqdn(b"clusters: []").is_err());
        assert!(fqdn(b"{{{ not yaml").is_err());
    }
}
