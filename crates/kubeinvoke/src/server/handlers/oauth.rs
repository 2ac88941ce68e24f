//! The built-in token issuer: OpenID discovery, JWKS and the client-credentials token endpoint,
//! under `/{tenant}` (Entra ID style) and `/adfs`. Errors follow RFC 6749, never a 500.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::arm::wire::{OAuthError, OpenIdConfiguration, TokenResponse};
use crate::identity::IssueError;
use crate::identity::tokens::LIFETIME_SECONDS;
use crate::server::AppState;
use crate::server::request::{RequestContext, json, query_pairs};

/// Where tokens of an authority come from: a tenant (v2 endpoints) or ADFS.
enum Authority {
    Tenant,
    Adfs,
}

impl Authority {
    fn base(&self, ctx: &RequestContext, app: &AppState) -> String {
        match self {
            Authority::Tenant => format!("{}/{}", ctx.base_url, app.instance.tenant_id),
            Authority::Adfs => format!("{}/adfs", ctx.base_url),
        }
    }

    fn issuer(&self, ctx: &RequestContext, app: &AppState) -> String {
        match self {
            Authority::Tenant => format!("{}/v2.0", self.base(ctx, app)),
            Authority::Adfs => self.base(ctx, app),
        }
    }
}

fn oauth_error(status: StatusCode, error: &'static str, description: impl Into<String>) -> Response {
    json(status, &OAuthError { error: error.into(), error_description: description.into() })
}

/// The tenant in the path must be ours (or an alias clients use for "whichever tenant").
fn known_tenant(app: &AppState, tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(&app.instance.tenant_id)
        || ["common", "organizations"].iter().any(|alias| tenant.eq_ignore_ascii_case(alias))
}

fn unknown_tenant(tenant: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_tenant", format!("AADSTS90002: Tenant '{tenant}' not found."))
}

fn discovery(app: &AppState, request: Request, authority: Authority) -> Response {
    let (mut parts, _) = request.into_parts();
    let ctx = RequestContext::new(app, &mut parts);
    let base = authority.base(&ctx, app);
    let (token, authorize, jwks) = match authority {
        Authority::Tenant => (
            format!("{base}/oauth2/v2.0/token"),
            format!("{base}/oauth2/v2.0/authorize"),
            format!("{base}/discovery/v2.0/keys"),
        ),
        Authority::Adfs => {
            (format!("{base}/oauth2/token"), format!("{base}/oauth2/authorize"), format!("{base}/discovery/keys"))
        }
    };
    json(
        StatusCode::OK,
        &OpenIdConfiguration {
            issuer: authority.issuer(&ctx, app),
            authorization_endpoint: authorize,
            token_endpoint: token,
            jwks_uri: jwks,
            response_types_supported: vec!["token"],
            subject_types_supported: vec!["pairwise"],
            id_token_signing_alg_values_supported: vec!["RS256"],
            token_endpoint_auth_methods_supported: vec!["client_secret_post", "client_secret_basic"],
            grant_types_supported: vec!["client_credentials"],
            tenant_region_scope: None,
            cloud_instance_name: "kubeinvoke",
        },
    )
}

pub(crate) async fn tenant_discovery(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    if !known_tenant(&app, &tenant) {
        return unknown_tenant(&tenant);
    }
    discovery(&app, request, Authority::Tenant)
}

pub(crate) async fn adfs_discovery(State(app): State<Arc<AppState>>, request: Request) -> Response {
    discovery(&app, request, Authority::Adfs)
}

pub(crate) async fn keys(State(app): State<Arc<AppState>>) -> Response {
    json(StatusCode::OK, &app.identity.jwks())
}

pub(crate) async fn tenant_token(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    if !known_tenant(&app, &tenant) {
        return unknown_tenant(&tenant);
    }
    token(&app, request, Authority::Tenant).await
}

pub(crate) async fn adfs_token(State(app): State<Arc<AppState>>, request: Request) -> Response {
    token(&app, request, Authority::Adfs).await
}

async fn token(app: &AppState, request: Request, authority: Authority) -> Response {
    let (mut parts, body) = request.into_parts();
    let ctx = RequestContext::new(app, &mut parts);
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The request body is missing or too large.");
    };
    let form = query_pairs(&String::from_utf8_lossy(&body));
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("The grant type '{other}' is not supported; use client_credentials."),
            );
        }
        None => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The 'grant_type' parameter is missing.");
        }
    }
    let basic = basic_credentials(&ctx.headers);
    let used_basic = basic.is_some();
    let (client_id, secret) = match (field("client_id"), field("client_secret"), basic) {
        (Some(id), Some(secret), _) => (id.to_string(), secret.to_string()),
        (_, _, Some(pair)) => pair,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Client credentials are missing: send client_id and client_secret.",
            );
        }
    };
    let resource = field("scope")
        .and_then(|scopes| scopes.split_whitespace().find_map(|s| s.strip_suffix("/.default")))
        .or_else(|| field("resource"))
        .map(str::to_string);
    let Some(resource) = resource.filter(|r| !r.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "A scope of the form '<resource>/.default' (or a 'resource') is required for client credentials.",
        );
    };
    match app.identity.issue(&authority.issuer(&ctx, app), &client_id, &secret, &resource).await {
        Ok(access_token) => json(
            StatusCode::OK,
            &TokenResponse {
                token_type: "Bearer".into(),
                expires_in: LIFETIME_SECONDS - 1,
                ext_expires_in: LIFETIME_SECONDS - 1,
                access_token,
            },
        ),
        Err(IssueError::InvalidClient) => {
            let mut response = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided, or the client does not exist.",
            );
            // RFC 6749 §5.2: a challenge only for clients that authenticated with the header (a
            // challenge on a browser's fetch would open a password dialog).
            if used_basic {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic"));
            }
            response
        }
        Err(IssueError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "issuing a token failed");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The token could not be issued; retry.",
            )
        }
    }
}

/// `Authorization: Basic base64(client_id:client_secret)` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Only client credentials are supported: interactive flows get a clear refusal.
pub(crate) async fn authorize() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        "kubeinvoke issues tokens only through the client_credentials grant at the token endpoint.",
    )
    .into_response()
}
