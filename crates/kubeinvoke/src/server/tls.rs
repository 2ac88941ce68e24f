//! The server's own certificate authority and leaf certificate, made once per data directory.
//!
//! Users trust one file, `tls/ca.pem`. The leaf is re-issued by the same CA key when a new
//! `--hostname` asks for a name it lacks, so a trusted CA stays trusted.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::files::{create_private_dir, write_private};

/// Where the generated certificate material lives.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const CA_COMMON_NAME: &str = "kubeinvoke local CA";

/// Makes (or reuses) the CA and a leaf valid for localhost, 127.0.0.1, ::1 and `hostnames`.
pub(crate) fn ensure_self_signed(data_dir: &Path, hostnames: &[String]) -> anyhow::Result<TlsFiles> {
    let dir = data_dir.join("tls");
    create_private_dir(&dir)?;
    let files = TlsFiles { ca_cert: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    let ca_key_path = dir.join("ca.key");
    let names_path = dir.join("server.names");

    let wanted: BTreeSet<String> =
        ["localhost", "127.0.0.1", "::1"].into_iter().map(String::from).chain(hostnames.iter().cloned()).collect();

    let ca_key = if ca_key_path.exists() && files.ca_cert.exists() {
        KeyPair::from_pem(&fs::read_to_string(&ca_key_path)?).context("reading the CA key")?
    } else {
        let key = KeyPair::generate()?;
        let ca = ca_params().self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        fs::write(&files.ca_cert, ca.pem())?;
        // A new CA invalidates any old leaf.
        let _ = fs::remove_file(&names_path);
        key
    };

    let current: BTreeSet<String> =
        fs::read_to_string(&names_path).unwrap_or_default().lines().map(String::from).collect();
    if files.cert.exists() && files.key.exists() && wanted.is_subset(&current) {
        return Ok(files);
    }
    let names: Vec<String> = wanted.union(&current).cloned().collect();
    let issuer = Issuer::new(ca_params(), ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.clone()).context("a --hostname is not a valid DNS name or IP")?;
    leaf.distinguished_name.push(DnType::CommonName, "kubeinvoke");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (not_before, not_after) = validity(825);
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&leaf_key, &issuer)?;
    write_private(&files.key, leaf_key.serialize_pem().as_bytes())?;
    fs::write(&files.cert, format!("{}{}", cert.pem(), fs::read_to_string(&files.ca_cert)?))?;
    fs::write(&names_path, names.join("\n"))?;
    Ok(files)
}

/// The CA's parameters; identical every time so leaves re-signed later chain to the same CA.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name.push(DnType::OrganizationName, "kubeinvoke");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let (not_before, not_after) = validity(3650);
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::days(1), now + time::Duration::days(days))
}
/// The TLS configuration served from a certificate chain and key in PEM files, offering HTTP/2
/// and HTTP/1.1 by ALPN.
pub(crate) fn server_config(cert: &Path, key: &Path) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not make a TLS configuration")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}
