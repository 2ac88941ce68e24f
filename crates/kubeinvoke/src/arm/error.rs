//! `ApiError`: every way an ARM request can fail, mapped to status, code and message in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::refusal::{ApprovalRefusal, AuthorizationRefusal, ExtensionRefusal};
use super::wire::CloudError;

/// A request failure as the client sees it: a status and a CloudError body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The api-version query parameter (?api-version=) is required for all requests.")]
    MissingApiVersion,
    #[error("The api-version '{given}' is invalid. The supported versions are {supported}.")]
    InvalidApiVersion { given: String, supported: String },
    #[error("The provided subscription identifier '{0}' is malformed or invalid.")]
    InvalidSubscriptionId(String),
    #[error(
        "The specified resource group name '{0}' is invalid. Resource group names are 1-90 characters of letters, digits, underscores, hyphens, periods and parentheses, and cannot end in a period."
    )]
    InvalidResourceGroupName(String),
    #[error(
        "The resource name '{0}' is invalid. It must match '^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{{0,61}}[a-zA-Z0-9]$'."
    )]
    InvalidResourceName(String),
    #[error("Resource group '{0}' could not be found.")]
    ResourceGroupNotFound(String),
    #[error("The resource namespace '{0}' is invalid: this server serves no such provider.")]
    ProviderNotFound(String),
    #[error(
        "Invalid resource group location '{requested}'. The Resource group already exists in location '{existing}'."
    )]
    InvalidResourceGroupLocation { requested: String, existing: String },
    #[error(
        "The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{group}' was not found."
    )]
    ClusterNotFound { group: String, name: String },
    #[error("The command result '{0}' was not found. It may never have existed or may have expired.")]
    CommandNotFound(String),
    #[error("No HTTP resource was found that matches the request URI '{0}'.")]
    NoRoute(String),
    #[error("The requested resource does not support http method '{method}'.")]
    MethodNotAllowed { method: String, allowed: &'static str },
    #[error("The request content was invalid and could not be deserialized: {0}")]
    InvalidRequestContent(String),
    #[error(
        "The request body is larger than the limit of {limit} bytes ({} MiB): attach fewer or smaller files, or ask the operator to raise --max-body-bytes.",
        limit / (1024 * 1024)
    )]
    BodyTooLarge { limit: usize },
    #[error("{message}")]
    InvalidParameter { target: std::borrow::Cow<'static, str>, message: String },
    #[error("The location property is required for this definition.")]
    LocationRequired,
    #[error(
        "Run command is disabled for managed cluster '{0}' (properties.apiServerAccessProfile.disableRunCommand is true)."
    )]
    RunCommandDisabled(String),
    #[error("This cluster have Azure Active Directory enabled, .clusterToken is required.")]
    MissingAadClusterToken,
    #[error("Managed cluster '{0}' was registered without properties.kubeconfig, so it has no credentials to list.")]
    NoCredentials(String),
    #[error("Too many commands are waiting to run ({queued}). Retry after {retry_after} seconds.")]
    QueueFull { queued: usize, retry_after: u64 },
    #[error("Authentication failed. The 'Authorization' header is missing or is not a bearer token.")]
    AuthenticationMissing { authorization_uri: String },
    #[error("The access token is invalid: {0}")]
    InvalidToken(String),
    #[error("The access token expiry UTC time is earlier than current UTC time.")]
    ExpiredToken,
    #[error(
        "The client '{app_id}' with object id '{object_id}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid."
    )]
    AuthorizationFailed { app_id: String, object_id: String, action: String, scope: String },
    #[error("The command '{id}' has already finished ({state}); only a running or queued command can be canceled.")]
    AlreadyFinished { id: String, state: &'static str },
    #[error("The command run '{0}' was not found in this scope. It may never have existed or may have expired.")]
    RunNotFound(String),
    #[error("The command run '{id}' has already finished ({state}); only a run in progress can be canceled.")]
    RunAlreadyFinished { id: String, state: &'static str },
    #[error(transparent)]
    Authorization(#[from] AuthorizationRefusal),
    #[error(transparent)]
    Extension(#[from] ExtensionRefusal),
    #[error(transparent)]
    Approval(#[from] ApprovalRefusal),
    #[error("The service's database is unavailable. Retry after {retry_after} seconds.")]
    StoreUnavailable { retry_after: u64 },
    #[error(
        "The server's data directory is out of space, so nothing new can be stored; results already stored can still be read. Free space (or ask the operator to) and retry after {retry_after} seconds."
    )]
    StorageFull { retry_after: u64 },
    #[error("The server could not complete the request. Its log has the details under this request's x-ms-request-id.")]
    Internal(#[source] anyhow::Error),
}

impl From<crate::resource::names::InvalidName> for ApiError {
    fn from(invalid: crate::resource::names::InvalidName) -> Self {
        use crate::resource::names::InvalidName;
        match invalid {
            InvalidName::Subscription(raw) => ApiError::InvalidSubscriptionId(raw),
            InvalidName::ResourceGroup(raw) => ApiError::InvalidResourceGroupName(raw),
            InvalidName::Resource(raw) => ApiError::InvalidResourceName(raw),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingApiVersion
            | InvalidApiVersion { .. }
            | InvalidSubscriptionId(_)
            | InvalidResourceGroupName(_)
            | InvalidResourceName(_)
            | InvalidRequestContent(_)
            | InvalidParameter { .. }
            | LocationRequired
            | RunCommandDisabled(_)
            | MissingAadClusterToken
            | NoCredentials(_) => StatusCode::BAD_REQUEST,
            ResourceGroupNotFound(_)
            | ProviderNotFound(_)
            | ClusterNotFound { .. }
            | CommandNotFound(_)
            | RunNotFound(_)
            | NoRoute(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthenticationMissing { .. } | InvalidToken(_) | ExpiredToken => StatusCode::UNAUTHORIZED,
            AuthorizationFailed { .. } => StatusCode::FORBIDDEN,
            Authorization(refusal) => refusal.status(),
            Extension(refusal) => refusal.status(),
            Approval(refusal) => refusal.status(),
            AlreadyFinished { .. } | RunAlreadyFinished { .. } | InvalidResourceGroupLocation { .. } => {
                StatusCode::CONFLICT
            }
            StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            StorageFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingApiVersion => "MissingApiVersionParameter",
            InvalidApiVersion { .. } => "InvalidApiVersionParameter",
            InvalidSubscriptionId(_) => "InvalidSubscriptionId",
            InvalidResourceGroupName(_) => "InvalidResourceGroupName",
            InvalidResourceName(_) => "InvalidResourceName",
            ResourceGroupNotFound(_) => "ResourceGroupNotFound",
            ProviderNotFound(_) => "InvalidResourceNamespace",
            InvalidResourceGroupLocation { .. } => "InvalidResourceGroupLocation",
            ClusterNotFound { .. } => "ResourceNotFound",
            CommandNotFound(_) | RunNotFound(_) | NoRoute(_) => "NotFound",
            MethodNotAllowed { .. } => "MethodNotAllowed",
            InvalidRequestContent(_) => "InvalidRequestContent",
            BodyTooLarge { .. } => "RequestEntityTooLarge",
            InvalidParameter { .. } => "InvalidParameter",
            LocationRequired => "LocationRequired",
            RunCommandDisabled(_) => "RunCommandDisabled",
            MissingAadClusterToken => "MissingAADClusterToken",
            NoCredentials(_) => "NoCredentials",
            QueueFull { .. } => "TooManyRequests",
            AuthenticationMissing { .. } => "AuthenticationFailed",
            InvalidToken(_) => "InvalidAuthenticationToken",
            ExpiredToken => "ExpiredAuthenticationToken",
            AuthorizationFailed { .. } => "AuthorizationFailed",
            Authorization(refusal) => refusal.code(),
            Extension(refusal) => refusal.code(),
            Approval(refusal) => refusal.code(),
            AlreadyFinished { .. } => "CommandAlreadyFinished",
            RunAlreadyFinished { .. } => "CommandRunAlreadyFinished",
            StoreUnavailable { .. } => "ServiceUnavailable",
            StorageFull { .. } => "InsufficientStorage",
            Internal(_) => "InternalServerError",
        }
    }

    fn target(&self) -> Option<&str> {
        match self {
            ApiError::InvalidParameter { target, .. } => Some(target),
            ApiError::MissingAadClusterToken => Some("clusterToken"),
            ApiError::LocationRequired | ApiError::InvalidResourceGroupLocation { .. } => Some("location"),
            _ => None,
        }
    }

    /// Shorthand for a 400 that names the offending property.
    /// A resource's `tags` that Azure would not accept (400 `InvalidParameter` on `tags`).
    pub fn invalid_tags(error: crate::resource::tags::TagError) -> Self {
        ApiError::invalid("tags", error.to_string())
    }

    pub fn invalid(target: impl Into<std::borrow::Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter { target: target.into(), message: message.into() }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed inside the server");
        }
        let body = CloudError::new(self.code(), self.to_string(), self.target());
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::QueueFull { retry_after, .. }
            | ApiError::StoreUnavailable { retry_after }
            | ApiError::StorageFull { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::BodyTooLarge { .. } => {
                // What is left of the body may not have been read: the connection cannot be reused.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::MethodNotAllowed { allowed, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            ApiError::AuthenticationMissing { authorization_uri } => {
                let challenge = format!(
                    "Bearer authorization_uri=\"{authorization_uri}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\""
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::InvalidToken(_) | ApiError::ExpiredToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            _ => {}
        }
        response
    }
}
