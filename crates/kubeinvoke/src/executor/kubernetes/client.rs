//! The Kubernetes client the server itself uses, made only from a [`ClusterAccess`]: never from a
//! kubeconfig as kube-rs would read it (which may start programs, read files and take proxies,
//! here as root). What a cluster's API server answers reaches a result only as the message of the
//! Kubernetes `Status` it sent, bounded: an arbitrary body (an internal service's error page) never
//! does.

use std::time::Duration;

use base64::Engine;
use kube::{Client, Config};
use secrecy::SecretString;

use crate::kubeconfig::{ClusterAccess, UnusableKubeconfig};

/// Why a run could not go on: a refusal of the cluster's API, no way to reach it, or a
/// kubeconfig the server may not use.
#[derive(Debug, thiserror::Error)]
pub(super) enum PodError {
    #[error("the cluster's API server refused: {0}")]
    Api(String),
    #[error("cannot reach the cluster's API server: {0}")]
    Unreachable(String),
    #[error("the cluster was registered without properties.kubeconfig, so there is nothing to run with")]
    NoKubeconfig,
    #[error("properties.kubeconfig cannot be used: {0}")]
    Unusable(#[from] UnusableKubeconfig),
    #[error("the Kubernetes client cannot be built: {0}")]
    Client(String),
}

/// The longest message of a cluster's answer that reaches a result.
const MAX_MESSAGE_CHARS: usize = 300;

/// What kube-rs calls a body that is not a `Status` (kube-client's `handle_api_errors`).
const NOT_A_STATUS: &str = "Failed to parse error data";

impl From<kube::Error> for PodError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.reason == NOT_A_STATUS => {
                PodError::Api(format!("HTTP {}, with a body that is not a Kubernetes Status (not shown)", status.code))
            }
            kube::Error::Api(status) => {
                PodError::Api(format!("{} ({})", bounded(&status.message), bounded(&status.reason)))
            }
            other => PodError::Unreachable(bounded(&other.to_string())),
        }
    }
}

/// At most [`MAX_MESSAGE_CHARS`] characters, control characters replaced.
fn bounded(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A client for the API server of `access`, with its inline credentials and nothing else.
pub(super) fn client_for(access: &ClusterAccess) -> Result<Client, PodError> {
    let mut config = Config::new(access.server.clone());
    config.root_cert = (!access.ca_certificates.is_empty()).then(|| access.ca_certificates.clone());
    config.tls_server_name = access.tls_server_name.clone();
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(330));
    config.auth_info.token = access.token.clone().map(SecretString::from);
    if let Some(identity) = &access.client_identity {
        let encode = |pem: &[u8]| base64::engine::general_purpose::STANDARD.encode(pem);
        config.auth_info.client_certificate_data = Some(encode(&identity.certificate_pem));
        config.auth_info.client_key_data = Some(SecretString::from(encode(&identity.key_pem)));
    }
    Client::try_from(config).map_err(|e| PodError::Client(bounded(&e.to_string())))
}

/// The access a job's kubeconfig allows, checked at every use: a cluster stored before the check
/// at registration existed (or edited in the database) never passed it.
pub(super) fn access_of(kubeconfig: Option<&[u8]>) -> Result<ClusterAccess, PodError> {
    let kubeconfig = kubeconfig.ok_or(PodError::NoKubeconfig)?;
    Ok(ClusterAccess::from_kubeconfig(kubeconfig)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_a_status_never_reaches_the_result() {
        let status =
            kube::core::Status::failure("internal secret page: db-password=hunter2", NOT_A_STATUS).with_code(500);
        let described = PodError::from(kube::Error::Api(status.boxed())).to_string();
        assert!(!described.contains("hunter2"), "{described}");
        assert!(described.contains("HTTP 500"), "{described}");
    }

    #[test]
    fn a_status_message_is_bounded_and_has_no_control_characters() {
        let long = format!("line1\nline2{}", "x".repeat(5000));
        let status = kube::core::Status::failure(&long, "Forbidden").with_code(403);
        let described = PodError::from(kube::Error::Api(status.boxed())).to_string();
        assert!(described.len() < 400 && !described.contains('\n'), "{described}");
    }
}
