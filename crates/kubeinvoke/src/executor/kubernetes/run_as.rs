//! A user's short-lived credential for a `runAs` saved command: the server makes a key, has the
//! cluster sign a client certificate for the user and its groups
//! (`kubernetes.io/kube-apiserver-client`, approved with the registered credential, which must be
//! allowed to), and gives the command a kubeconfig holding only that certificate. The cluster's
//! RBAC then decides with that identity; the registered credential never reaches the command.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rcgen::{PublicKeyData, SigningKey};

use super::client::{PodError, client_for};
use super::spec::COMMAND_ID_LABEL;
use crate::command::CommandId;
use crate::kubeconfig::ClusterAccess;

const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The shortest lifetime the signer accepts.
const MIN_LIFETIME: Duration = Duration::from_secs(600);
/// How long the cluster may take to sign.
const SIGNING_WAIT: Duration = Duration::from_secs(20);

/// A kubeconfig for `registered`'s server that authenticates as `user` in `groups`, valid for
/// `lifetime` (at least ten minutes: the signer's minimum); the error says why not, in words.
pub(crate) async fn user_kubeconfig(
    registered: &[u8],
    command: &CommandId,
    user: &str,
    groups: &[String],
    lifetime: Duration,
) -> Result<Vec<u8>, String> {
    signed_kubeconfig(registered, command, user, groups, lifetime).await.map_err(|e| e.to_string())
}

async fn signed_kubeconfig(
    registered: &[u8],
    command: &CommandId,
    user: &str,
    groups: &[String],
    lifetime: Duration,
) -> Result<Vec<u8>, PodError> {
    let access = ClusterAccess::from_kubeconfig(registered)?;
    let client = client_for(&access)?;
    let key = rcgen::KeyPair::generate().map_err(|e| PodError::Client(format!("making a key: {e}")))?;
    let request =
        certificate_request(&key, user, groups).map_err(|e| PodError::Client(format!("making the request: {e}")))?;
    let name = format!("kubeinvoke-{command}");
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(COMMAND_ID_LABEL.to_string(), command.to_string())].into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem("CERTIFICATE REQUEST", &request).into_bytes()),
            signer_name: SIGNER.into(),
            expiration_seconds: Some(i32::try_from(lifetime.max(MIN_LIFETIME).as_secs()).unwrap_or(i32::MAX)),
            usages: Some(vec!["client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    csrs.create(&PostParams::default(), &csr).await?;
    let signed = approve_and_wait(&csrs, &name, user).await;
    // The request has served its purpose whatever happened; its certificate is not a secret.
    let _ = csrs.delete(&name, &DeleteParams::default()).await;
    let certificate = signed?;
    crate::kubeconfig::with_client_certificate(registered, &certificate, key.serialize_pem().as_bytes())
        .map_err(|e| PodError::Client(format!("writing the kubeconfig: {e}")))
}

async fn approve_and_wait(csrs: &Api<CertificateSigningRequest>, name: &str, user: &str) -> Result<Vec<u8>, PodError> {
    let approval = serde_json::json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubeinvokeRunAs",
        "message": format!("a kubeinvoke saved command runs as {user}"),
    }]}});
    csrs.patch_approval(name, &PatchParams::default(), &Patch::Merge(&approval)).await?;
    let deadline = tokio::time::Instant::now() + SIGNING_WAIT;
    loop {
        let status = csrs.get(name).await?.status.unwrap_or_default();
        if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(certificate.0);
        }
        let refused =
            status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Denied" || c.type_ == "Failed");
        if let Some(refused) = refused {
            return Err(PodError::Api(format!(
                "the cluster did not sign the runAs certificate ({}): {}",
                refused.type_,
                refused.message.unwrap_or_default()
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PodError::Api(format!(
                "the cluster did not sign the runAs certificate within {}s (does it run the {SIGNER} signer?)",
                SIGNING_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A PKCS#10 request for `CN=user, O=group…` signed by `key` (ECDSA P-256 with SHA-256).
fn certificate_request(key: &rcgen::KeyPair, user: &str, groups: &[String]) -> Result<Vec<u8>, rcgen::Error> {
    use yasna::models::ObjectIdentifier;
    let oid = |parts: &[u64]| ObjectIdentifier::from_slice(parts);
    let attribute = |w: yasna::DERWriter, kind: &[u64], value: &str| {
        w.write_set(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(kind));
                w.next().write_utf8_string(value);
            })
        })
    };
    let info = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_sequence(|w| {
                for group in groups {
                    attribute(w.next(), &[2, 5, 4, 10], group);
                }
                attribute(w.next(), &[2, 5, 4, 3], user);
            });
            w.next().write_der(&key.subject_public_key_info());
            w.next().write_tagged_implicit(yasna::Tag::context(0), |w| w.write_set(|_| {}));
        })
    });
    let signature = key.sign(&info)?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&info);
            w.next().write_sequence(|w| w.next().write_oid(&oid(&[1, 2, 840, 10045, 4, 3, 2])));
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_user_and_every_group_and_verifies() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = certificate_request(&key, "jane", &["readers".into(), "ops".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("req.pem");
        std::fs::write(&path, pem("CERTIFICATE REQUEST", &der)).unwrap();
        let Ok(out) = std::process::Command::new("openssl")
            .args(["req", "-in"])
            .arg(&path)
            .args(["-noout", "-verify", "-subject", "-nameopt", "RFC2253"])
            .output()
        else {
            return eprintln!("openssl is not installed: the request's signature is checked by the cluster tests");
        };
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert!(text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"), "{text}");
        assert!(text.contains("CN=jane") && text.contains("O=readers") && text.contains("O=ops"), "{text}");
    }
}
