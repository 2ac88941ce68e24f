//! Access-token claims, and every reason a token is refused.

use serde::{Deserialize, Serialize};

/// Audiences an ARM call may carry (with or without the trailing slash).
pub const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

/// Seconds a token issued here stays valid.
pub const LIFETIME_SECONDS: i64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub tid: String,
    pub oid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
}

impl Claims {
    /// The application id (`appid` in v1 tokens, `azp` in v2).
    pub fn app_id(&self) -> &str {
        self.appid.as_deref().or(self.azp.as_deref()).unwrap_or(&self.sub)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm '{0}' is not accepted; only RS256 is")]
    Algorithm(String),
    #[error("the token names no key id (kid)")]
    MissingKid,
    #[error("the token was signed with an unknown key '{0}'")]
    UnknownKey(String),
    #[error("the token's issuer '{0}' is not trusted")]
    UntrustedIssuer(String),
    #[error("the token's tenant '{0}' is not this server's tenant")]
    WrongTenant(String),
    #[error("the token's audience is not one this server accepts")]
    WrongAudience,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}
