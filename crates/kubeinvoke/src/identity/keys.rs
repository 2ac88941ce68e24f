//! The token-signing key: RSA 2048, PKCS#8 PEM in the data directory (0600), published as a JWKS.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::files::write_private;

pub(crate) struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    /// Loads the key at `path`, or creates it there (0600) on first start.
    pub(crate) fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let private = match std::fs::read_to_string(path) {
            Ok(pem) => RsaPrivateKey::from_pkcs8_pem(&pem).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, pem) = generate()?;
                write_private(path, pem.as_bytes())?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::from_private(&private)
    }

    /// The key every replica sharing `store` signs with: the first replica to start generates it.
    pub(crate) async fn shared(store: &dyn crate::store::Store) -> anyhow::Result<Self> {
        const SETTING: &str = "signing-key";
        let pem = match store.settings().get_setting(SETTING).await? {
            Some(pem) => pem,
            None => {
                let (_, pem) = tokio::task::spawn_blocking(generate).await??;
                // Another replica may have stored its key meanwhile: whichever came first wins.
                store.settings().init_setting(SETTING, pem.as_bytes().to_vec()).await?
            }
        };
        let pem = String::from_utf8(pem).context("the stored signing key is not PEM")?;
        Self::from_private(&RsaPrivateKey::from_pkcs8_pem(&pem).context("reading the stored signing key")?)
    }

    fn from_private(private: &RsaPrivateKey) -> anyhow::Result<Self> {
        let public = RsaPublicKey::from(private);
        let der = public.to_public_key_der().context("encoding the public key")?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(der.as_bytes())[..16]);
        let pem = private.to_pkcs8_pem(LineEnding::LF)?;
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        Ok(SigningKey {
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_rsa_components(&n, &e)?,
            jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}),
            kid,
        })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// `{"keys": [...]}` as served at the `jwks_uri`.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

/// A new RSA 2048 key and its PKCS#8 PEM.
fn generate() -> anyhow::Result<(RsaPrivateKey, rsa::pkcs8::der::zeroize::Zeroizing<String>)> {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("generating the signing key")?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).context("encoding the signing key")?;
    Ok((key, pem))
}
