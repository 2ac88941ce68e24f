//! Authenticated ARM calls with CloudErrors turned into [`ClientError`]s.

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::config::{self, Connection, Resolved};
use super::exit::{ClientError, describe};
use crate::arm::wire::{CloudError, ListResult, Subscription};

pub(crate) const API_VERSION: &str = "2024-09-01";
const RESOURCES_API_VERSION: &str = "2022-09-01";

pub struct Api {
    resolved: Resolved,
    token: String,
    pub subscription: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The body as the wire type `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        T::deserialize(&self.body).map_err(unexpected)
    }
}

/// A listed item (or any body) as the wire type `T`.
pub(crate) fn from_wire<T: DeserializeOwned>(value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(unexpected)
}

/// An answer of another shape than the wire type says: a server this client does not know.
pub(crate) fn unexpected(e: serde_json::Error) -> ClientError {
    ClientError::local(format!("the server's answer is not what this client expects: {e}"))
}

/// A CloudError body as `(code, message)`, or `None` when the body is something else.
fn cloud_error(body: &Value) -> Option<(String, String)> {
    CloudError::deserialize(body).ok().map(|e| (e.error.code, e.error.message))
}

impl Api {
    pub async fn connect(connection: &Connection) -> Result<Self, ClientError> {
        let resolved = connection.resolve()?;
        let token = config::token(&resolved).await?;
        let mut api = Api { subscription: resolved.subscription.clone().unwrap_or_default(), resolved, token };
        if api.subscription.is_empty() {
            let listed =
                api.call(Method::GET, &format!("/subscriptions?api-version={RESOURCES_API_VERSION}"), None).await?;
            let subscriptions: ListResult<Subscription> = listed.parse()?;
            api.subscription = subscriptions
                .value
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::Auth("this principal can see no subscription".into()))?
                .subscription_id;
        }
        Ok(api)
    }

    pub fn group_path(&self, group: &str) -> String {
        format!("/subscriptions/{}/resourcegroups/{group}", self.subscription)
    }

    pub fn cluster_path(&self, group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}",
            self.subscription
        )
    }

    pub fn command_path(&self, group: &str, name: &str, id: &str) -> String {
        format!("{}/commandResults/{id}", self.cluster_path(group, name))
    }

    pub fn with_version(path: &str, version: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}api-version={version}")
    }

    pub fn resources_version(path: &str) -> String {
        Self::with_version(path, RESOURCES_API_VERSION)
    }

    /// Streams `path` (a live-logs URL) into `sink`, chunk by chunk as the server sends it.
    /// Returns the number of bytes written.
    pub async fn stream(&self, path: &str, mut sink: impl std::io::Write) -> Result<u64, ClientError> {
        let url = format!("{}{path}", self.resolved.url);
        let unreachable =
            |e: reqwest::Error| ClientError::Unreachable { url: self.resolved.url.clone(), cause: describe(&e) };
        let mut response = self
            .resolved
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            let (code, message) = cloud_error(&body).unwrap_or_else(|| ("Error".into(), String::new()));
            return Err(ClientError::Cloud { status: status.as_u16(), code, message });
        }
        let mut written = 0;
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            sink.write_all(&chunk).and_then(|()| sink.flush()).map_err(ClientError::local)?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// The first `top` items of an ARM list at `path`, following `nextLink`; pages ask for
    /// `top` items, at most `max_page`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        top: usize,
        max_page: usize,
    ) -> Result<Vec<T>, ClientError> {
        let mut next = Some(Self::with_version(path, API_VERSION) + &format!("&$top={}", top.clamp(1, max_page)));
        let mut entries = Vec::new();
        while let Some(page) = next.take() {
            let listed: ListResult<T> = self.call(Method::GET, &page, None).await?.parse()?;
            entries.extend(listed.value);
            if entries.len() < top {
                next = listed.next_link;
            }
        }
        entries.truncate(top);
        Ok(entries)
    }

    /// A call to `path` (relative to the server, or an absolute URL such as a `Location`).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Answer, ClientError> {
        let url = if path.starts_with("https://") || path.starts_with("http://") {
            path.to_string()
        } else {
            format!("{}{path}", self.resolved.url)
        };
        let mut request = self.resolved.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.resolved.url.clone(), cause: describe(&e) })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(Answer { status, headers, body });
        }
        let (code, message) = cloud_error(&body)
            .unwrap_or_else(|| (status.canonical_reason().unwrap_or("Error").to_string(), body.to_string()));
        Err(ClientError::Cloud { status: status.as_u16(), code, message })
    }
}
