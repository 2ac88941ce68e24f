//! The HTTP side of deliveries: the CloudEvents webhook validation handshake, and signed POSTs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DeliveryConfig;
use super::url_like::Endpoint;

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "kubeinvoke-signature";
/// What the receiver must answer the handshake with (CloudEvents HTTP webhook spec).
const REQUEST_ORIGIN: &str = "WebHook-Request-Origin";
const ALLOWED_ORIGIN: &str = "WebHook-Allowed-Origin";
/// The origin the handshake announces.
pub const ORIGIN: &str = "kubeinvoke.local";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url} answered {status}")]
    Refused { url: String, status: u16 },
    #[error(
        "{url} did not allow this origin in the validation handshake (WebHook-Allowed-Origin missing or different)"
    )]
    NotAllowed { url: String },
    #[error("the webhook client could not be built: {0}")]
    Client(String),
}

/// Posts to webhooks, trusting the system's roots and an optional private CA.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(config: &DeliveryConfig) -> Result<Self, WebhookError> {
        let mut roots: Vec<reqwest::Certificate> = rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
            .collect();
        if let Some(ca) = &config.extra_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| WebhookError::Client(format!("reading --event-ca {}: {e}", ca.display())))?;
            let extra = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| WebhookError::Client(format!("--event-ca {}: {e}", ca.display())))?;
            roots.extend(extra);
        }
        let client = reqwest::Client::builder()
            .tls_certs_only(roots)
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhooks { client })
    }

    /// The CloudEvents validation handshake: `OPTIONS` announcing our origin; the endpoint must
    /// allow it (or `*`).
    pub async fn handshake(&self, endpoint: &Endpoint) -> Result<(), WebhookError> {
        let url = endpoint.base();
        let response = self
            .client
            .request(reqwest::Method::OPTIONS, &endpoint.url)
            .header(REQUEST_ORIGIN, ORIGIN)
            .send()
            .await
            .map_err(|e| WebhookError::Unreachable { url: url.clone(), cause: crate::client::exit::describe(&e) })?;
        if !response.status().is_success() {
            return Err(WebhookError::Refused { url, status: response.status().as_u16() });
        }
        let allowed = response.headers().get(ALLOWED_ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if allowed.split(',').any(|o| o.trim() == ORIGIN || o.trim() == "*") {
            Ok(())
        } else {
            Err(WebhookError::NotAllowed { url })
        }
    }

    /// POSTs one structured CloudEvent, signed with the subscription's key.
    pub async fn deliver(&self, endpoint: &Endpoint, key: &str, body: &str) -> Result<(), WebhookError> {
        let url = endpoint.base();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let response = self
            .client
            .post(&endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, "application/cloudevents+json; charset=utf-8")
            .header(SIGNATURE_HEADER, signature(key, now, body))
            .header(REQUEST_ORIGIN, ORIGIN)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| WebhookError::Unreachable { url: url.clone(), cause: crate::client::exit::describe(&e) })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(WebhookError::Refused { url, status: response.status().as_u16() })
        }
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub fn signature(key: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={digest}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"key", b'1700000000.{"a":1}', sha256).
        assert_eq!(
            super::signature("key", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
