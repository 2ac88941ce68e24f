//! Just enough of a kubeconfig to know which API server it points at.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("it is not a kubeconfig document: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    #[error("it names no cluster with a server URL")]
    NoServer,
    #[error("its server URL {0:?} has no host")]
    BadServer(String),
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
pub fn server_url(document: &[u8]) -> Result<String, KubeconfigError> {
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
pub fn fqdn(document: &[u8]) -> Result<String, KubeconfigError> {
    let url = server_url(document)?;
    let uri: axum::http::Uri = url.parse().map_err(|_| KubeconfigError::BadServer(url.clone()))?;
    let host = uri.host().ok_or_else(|| KubeconfigError::BadServer(url.clone()))?;
    Ok(host.trim_start_matches('[').trim_end_matches(']').to_string())
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
    fn handles_ip_servers_and_garbage() {
        let v6 = "clusters:\n- name: c\n  cluster: {server: \"https://[::1]:6443\"}\n";
        assert_eq!(fqdn(v6.as_bytes()).unwrap(), "::1");
        assert!(fqdn(b"clusters: []").is_err());
        assert!(fqdn(b"{{{ not yaml").is_err());
    }
}
