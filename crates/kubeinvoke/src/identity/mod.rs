//! Identity: the built-in token issuer, token validation (own and external issuers) and RBAC.
//!
//! The server asks two questions, both answered here: who is calling ([`Identity::authenticate`])
//! and may they do this ([`Caller::require`]).

mod cache;
pub(crate) mod custom_roles;
pub(crate) mod external;
pub(crate) mod keys;
pub(crate) mod principals;
pub(crate) mod rbac;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Serialize;

use crate::arm::ApiError;
use crate::files::write_private;
use crate::store::{RoleAssignmentRecord, Store};
use crate::time::now_millis;
use external::ExternalIssuer;
use keys::SigningKey;
use tokens::{Claims, LEEWAY_SECONDS, LIFETIME_SECONDS, TokenError};

#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Serve the built-in issuer and trust its tokens (on by default).
    pub builtin_issuer: bool,
    /// Issuer URLs whose tokens are trusted, keys from their discovery documents.
    pub trusted_issuers: Vec<String>,
    /// Extra CA (PEM) for fetching external issuers' keys.
    pub trusted_issuer_ca: Option<PathBuf>,
}

pub struct Identity {
    pub tenant_id: String,
    key: SigningKey,
    builtin_issuer: bool,
    external: Vec<ExternalIssuer>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    validated: cache::ValidatedTokens,
}

/// An authenticated caller and the role assignments that apply to them.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Arc<Claims>,
    pub assignments: Arc<[RoleAssignmentRecord]>,
    /// The custom role definitions its assignments name (built-in ones are known without them).
    pub custom_roles: Vec<rbac::RoleDefinition>,
}

/// What the bootstrap admin file holds: enough for `az login --service-principal`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub app_id: String,
    pub display_name: String,
    pub password: String,
    pub tenant: String,
}

/// The principal created on first start, with Owner at `/`.
pub const BOOTSTRAP_ADMIN: &str = "kubeinvoke-admin";
pub const BOOTSTRAP_FILE: &str = "bootstrap-admin.json";

impl Identity {
    /// The signing key is a 0600 file in the data directory, or, when replicas share the store,
    /// kept in the store so a token issued by one replica validates at every other.
    pub async fn new(
        config: &IdentityConfig,
        data_dir: &Path,
        tenant_id: String,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Self> {
        let key = if store.is_shared() {
            SigningKey::shared(store.as_ref()).await?
        } else {
            SigningKey::load_or_create(&data_dir.join("signing-key.pem"))?
        };
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = &config.trusted_issuer_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem).context("parsing --trusted-issuer-ca")?;
            http = http.tls_certs_merge([certificate]);
        }
        Ok(Identity {
            tenant_id,
            key,
            builtin_issuer: config.builtin_issuer,
            external: config.trusted_issuers.iter().cloned().map(ExternalIssuer::new).collect(),
            http: http.build().context("building the HTTP client for external issuers")?,
            store,
            validated: cache::ValidatedTokens::default(),
        })
    }

    /// On the very first start, creates the admin principal (Owner at `/`) and writes its
    /// credentials to a 0600 file. Returns that file's path while it exists. Of replicas sharing
    /// a store, only the first (`replica`) to start does this, in its own data directory.
    pub async fn bootstrap(&self, data_dir: &Path, replica: &str) -> anyhow::Result<Option<PathBuf>> {
        let path = data_dir.join(BOOTSTRAP_FILE);
        let elected = !self.store.is_shared()
            || self.store.settings().init_setting("bootstrap-replica", replica.as_bytes().to_vec()).await?
                == replica.as_bytes();
        if elected && self.store.identity().list_principals().await?.is_empty() {
            let created = principals::new_principal(BOOTSTRAP_ADMIN);
            let credentials = Credentials {
                app_id: created.record.app_id.clone(),
                display_name: BOOTSTRAP_ADMIN.into(),
                password: created.secret.clone(),
                tenant: self.tenant_id.clone(),
            };
            let owner = rbac::role_by_name("Owner").expect("built in");
            self.store.identity().create_principal(created.record.clone()).await?;
            self.store
                .identity()
                .put_role_assignment(RoleAssignmentRecord {
                    name: uuid::Uuid::new_v4().to_string(),
                    scope: "/".into(),
                    role_definition_id: owner.id.into(),
                    principal_id: created.record.object_id.clone(),
                    principal_type: "ServicePrincipal".into(),
                    created_at: now_millis(),
                })
                .await?;
            write_private(&path, &serde_json::to_vec_pretty(&credentials)?)?;
        }
        Ok(path.exists().then_some(path))
    }

    pub fn builtin_issuer(&self) -> bool {
        self.builtin_issuer
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.key.jwks()
    }

    /// Client credentials grant: checks the secret and signs a token for `resource`.
    pub async fn issue(
        &self,
        issuer: &str,
        client_id: &str,
        secret: &str,
        resource: &str,
    ) -> Result<String, IssueError> {
        let principal = match uuid::Uuid::try_parse(client_id) {
            Ok(_) => self
                .store
                .identity()
                .principal_by_app_id(client_id)
                .await
                .map_err(|e| IssueError::Internal(e.into()))?,
            Err(_) => None,
        };
        let Some(principal) = principal.filter(|p| principals::secret_matches(p, secret)) else {
            return Err(IssueError::InvalidClient);
        };
        let now = now_millis() / 1000;
        let claims = Claims {
            iss: issuer.to_string(),
            aud: resource.to_string(),
            tid: self.tenant_id.clone(),
            oid: principal.object_id.clone(),
            appid: Some(principal.app_id.clone()),
            azp: Some(principal.app_id.clone()),
            sub: principal.object_id,
            iat: now,
            nbf: now,
            exp: now + LIFETIME_SECONDS,
            ver: Some("2.0".into()),
        };
        self.key.sign(&claims).map_err(IssueError::Internal)
    }

    /// Validates a token for one of `audiences`: RS256 only, a known key of a trusted issuer,
    /// `exp`/`nbf` within [`LEEWAY_SECONDS`], and for our own tokens our tenant.
    pub async fn validate(&self, token: &str, audiences: &[&str]) -> Result<Arc<Claims>, TokenError> {
        let now = now_millis() / 1000;
        if let Some(claims) = self.validated.get(token, audiences, now) {
            return Ok(claims);
        }
        let claims = Arc::new(self.validate_uncached(token, audiences).await?);
        self.validated.insert(token, audiences, &claims, now);
        Ok(claims)
    }

    /// Full validation, bypassing the cache: what the first request with a token pays.
    pub async fn validate_uncached(&self, token: &str, audiences: &[&str]) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let issuer = unverified_issuer(token)?;
        let (key, own) = if kid == self.key.kid {
            if !self.builtin_issuer {
                return Err(TokenError::UntrustedIssuer(issuer));
            }
            (self.key.decoding.clone(), true)
        } else {
            let external =
                self.external.iter().find(|e| e.issuer == issuer.trim_end_matches('/')).ok_or_else(|| {
                    if self.external.is_empty() {
                        TokenError::UnknownKey(kid.clone())
                    } else {
                        TokenError::UntrustedIssuer(issuer.clone())
                    }
                })?;
            (external.key(&self.http, &kid).await?, false)
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed(e.to_string()),
                }
            })?
            .claims;
        if own {
            let ours = claims.iss.ends_with(&format!("/{}/v2.0", self.tenant_id)) || claims.iss.ends_with("/adfs");
            if !ours {
                return Err(TokenError::UntrustedIssuer(claims.iss));
            }
            if claims.tid != self.tenant_id {
                return Err(TokenError::WrongTenant(claims.tid));
            }
        }
        Ok(claims)
    }

    /// Authenticates an ARM request from its `Authorization` header.
    /// `authorization_uri` (where a token comes from) is built only for the 401 that names it.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        authorization_uri: impl Fn() -> String,
    ) -> Result<Caller, ApiError> {
        let missing = || ApiError::AuthenticationMissing { authorization_uri: authorization_uri() };
        let value = authorization.ok_or_else(missing)?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(missing());
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(ApiError::InvalidToken("the bearer token is empty".into()));
        }
        let claims = self.validate(token, &tokens::ARM_AUDIENCES).await.map_err(|e| match e {
            TokenError::Expired => ApiError::ExpiredToken,
            other => ApiError::InvalidToken(other.to_string()),
        })?;
        let assignments =
            self.store.identity().role_assignments_of(&crate::resource::names::lowercase(&claims.oid)).await?;
        let mut custom_roles = Vec::new();
        for assignment in assignments.iter().filter(|a| rbac::role_by_id(&a.role_definition_id).is_none()) {
            if let Some(role) = custom_roles::find(self.store.as_ref(), &assignment.role_definition_id).await? {
                custom_roles.push(role);
            }
        }
        Ok(Caller { claims, assignments, custom_roles })
    }
}

impl Caller {
    pub fn may(&self, action: &str, scope: &str) -> bool {
        rbac::allows(&self.assignments, &self.custom_roles, action, scope)
    }

    /// 403 `AuthorizationFailed` unless an assignment allows `action` on `scope`.
    pub fn require(&self, action: &str, scope: &str) -> Result<(), ApiError> {
        if self.may(action, scope) {
            Ok(())
        } else {
            Err(ApiError::AuthorizationFailed {
                app_id: self.claims.app_id().to_string(),
                object_id: self.claims.oid.clone(),
                action: action.to_string(),
                scope: scope.to_string(),
            })
        }
    }
}

/// The `iss` claim, read before the signature is checked only to choose the key to check it with.
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let payload = token.split('.').nth(1).ok_or_else(|| TokenError::Malformed("not a JWT".into()))?;
    let bytes =
        URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|e| TokenError::Malformed(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).map(|c| c.iss).map_err(|e| TokenError::Malformed(e.to_string()))
}

/// Why the token endpoint refused; rendered as an RFC 6749 error.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the client id or secret is wrong")]
    InvalidClient,
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The dispatcher's check of a `clusterToken`: valid for the AKS AAD server application, and the
/// asker's own — a token captured from someone else (a log, a fan-out that reached the wrong
/// cluster) is refused even though its signature and audience are good.
#[async_trait::async_trait]
impl crate::dispatcher::TokenCheck for Identity {
    async fn check_cluster_token(
        &self,
        token: &str,
        asker: &crate::dispatcher::Asker,
    ) -> Result<(), crate::dispatcher::TokenRefusal> {
        use crate::dispatcher::TokenRefusal;
        let claims = self
            .validate(token, &[crate::azure::AKS_AAD_SERVER_APP])
            .await
            .map_err(|e| TokenRefusal::Invalid(e.to_string()))?;
        if claims.oid != asker.object_id || claims.tid != asker.tenant_id {
            return Err(TokenRefusal::NotTheCallers);
        }
        Ok(())
    }
}
