//! Issuers trusted by configuration (for example a real Entra ID tenant): their signing keys come
//! from the JWKS named in their discovery document, cached and refreshed when an unknown `kid`
//! appears (at most every few seconds, so forged kids cannot make us hammer the issuer).

use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use super::tokens::TokenError;

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct ExternalIssuer {
    pub issuer: String,
    cache: Mutex<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    keys: Option<JwkSet>,
    refreshed: Option<Instant>,
}

impl ExternalIssuer {
    pub(crate) fn new(issuer: String) -> Self {
        ExternalIssuer { issuer: issuer.trim_end_matches('/').to_string(), cache: Mutex::new(KeyCache::default()) }
    }

    pub(crate) async fn key(&self, http: &reqwest::Client, kid: &str) -> Result<DecodingKey, TokenError> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = find(cache.keys.as_ref(), kid) {
            return Ok(key);
        }
        let recently = cache.refreshed.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL);
        if !recently {
            cache.refreshed = Some(Instant::now());
            match self.fetch(http).await {
                Ok(keys) => cache.keys = Some(keys),
                Err(e) => tracing::warn!(issuer = %self.issuer, error = %e, "fetching the issuer's keys failed"),
            }
        }
        find(cache.keys.as_ref(), kid).ok_or_else(|| TokenError::UnknownKey(kid.to_string()))
    }

    async fn fetch(&self, http: &reqwest::Client) -> anyhow::Result<JwkSet> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery = http.get(&discovery_url).send().await?.error_for_status()?.json().await?;
        Ok(http.get(&discovery.jwks_uri).send().await?.error_for_status()?.json().await?)
    }
}

fn find(keys: Option<&JwkSet>, kid: &str) -> Option<DecodingKey> {
    keys?.find(kid).and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
}
