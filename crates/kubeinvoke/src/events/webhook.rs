//! The HTTP side of deliveries: the CloudEvents webhook validation handshake, and signed POSTs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DeliveryConfig;
use super::endpoint::{AddressPolicy, Endpoint, REFUSED_ADDRESS};

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub(crate) const SIGNATURE_HEADER: &str = "kubeinvoke-signature";
/// What the receiver must answer the handshake with (CloudEvents HTTP webhook spec).
const REQUEST_ORIGIN: &str = "WebHook-Request-Origin";
const ALLOWED_ORIGIN: &str = "WebHook-Allowed-Origin";
/// The origin the handshake announces.
pub(crate) const ORIGIN: &str = "kubeinvoke.local";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// One wording for every way a connection can fail (refused, timed out, not TLS, a
    /// certificate not trusted): a subscription must not become a port scanner.
    #[error("{url} could not be reached over a trusted https connection")]
    Unreachable { url: String },
    #[error("{url}: {REFUSED_ADDRESS}")]
    Address { url: String },
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
    addresses: AddressPolicy,
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
            .no_proxy()
            .dns_resolver(GuardedResolver { addresses: config.addresses })
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhooks { client, addresses: config.addresses })
    }

    /// Sends one request to `endpoint` once its URL passes the address policy (names are
    /// checked as resolved, by [`GuardedResolver`], at connect time).
    async fn send(
        &self,
        endpoint: &Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, WebhookError> {
        let url = endpoint.base();
        if self.addresses.check(endpoint).is_err() {
            return Err(WebhookError::Address { url });
        }
        request.send().await.map_err(|e| {
            let blocked = std::error::Error::source(&e).is_some_and(|cause| {
                let mut cause = Some(cause);
                while let Some(c) = cause {
                    if c.is::<BlockedAddress>() {
                        return true;
                    }
                    cause = c.source();
                }
                false
            });
            if blocked { WebhookError::Address { url } } else { WebhookError::Unreachable { url } }
        })
    }

    /// The CloudEvents validation handshake: `OPTIONS` announcing our origin; the endpoint must
    /// allow it (or `*`).
    pub async fn handshake(&self, endpoint: &Endpoint) -> Result<(), WebhookError> {
        let url = endpoint.base();
        let request =
            self.client.request(reqwest::Method::OPTIONS, endpoint.url().clone()).header(REQUEST_ORIGIN, ORIGIN);
        let response = self.send(endpoint, request).await?;
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
        let request = self
            .client
            .post(endpoint.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/cloudevents+json; charset=utf-8")
            .header(SIGNATURE_HEADER, signature(key, now, body))
            .header(REQUEST_ORIGIN, ORIGIN)
            .body(body.to_string());
        let response = self.send(endpoint, request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(WebhookError::Refused { url, status: response.status().as_u16() })
        }
    }
}

/// Resolves webhook host names and keeps only the addresses the policy allows: the check is
/// on the address connected to, so a name that resolves to a public address at PUT and to
/// 127.0.0.1 later (DNS rebinding) is refused then.
struct GuardedResolver {
    addresses: AddressPolicy,
}

/// A name that resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("the name resolves only to addresses webhooks may not reach")]
struct BlockedAddress;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addresses = self.addresses;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<std::net::SocketAddr> = resolved.filter(|a| addresses.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(BlockedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub(crate) fn signature(key: &str, timestamp: u64, body: &str) -> String {
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
