//! Exit codes of the client, and the errors that map to them.

/// Usage errors (clap's own).
pub const USAGE: u8 = 2;
/// The resource (group, cluster, command result) does not exist — as az.
pub const NOT_FOUND: u8 = 3;
/// Not logged in, token refused, or not allowed (401/403).
pub const AUTH: u8 = 4;
/// Any other refusal by the server (4xx/5xx).
pub const REFUSED: u8 = 5;
/// The server could not be reached (connection, TLS, timeout).
pub const UNREACHABLE: u8 = 6;
/// The command ended `Failed` or `Canceled` (its reason is printed); of a fan-out, some target did.
pub const COMMAND_FAILED: u8 = 125;
/// A fan-out: every target that ran exited, but some were skipped (not allowed, maxErrors reached).
pub const TARGETS_SKIPPED: u8 = 7;
/// A fan-out: every target ran to its end, and some exited non-zero.
pub const TARGETS_NONZERO: u8 = 1;

/// The exit code table, for `kubeinvoke --help`.
pub const HELP: &str = "Exit codes of invoke and result: the command's own exit code when it ran; 125 when it ended \
Failed or Canceled (the reason is printed). Of a fan-out (invoke --tag/--cluster-id, run --watch): 0 when every \
target exited 0; 1 when every target ran and some exited non-zero; 7 when some were skipped (not allowed, maxErrors \
reached); 125 when some target ended Failed or Canceled. Of every client command: 2 usage error, 3 not found, 4 not \
logged in or not allowed, 5 other refusal by the server, 6 server unreachable (connection or TLS).";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A CloudError from the server.
    #[error("({code}) {message}")]
    Cloud { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Cloud { status: 404, .. } => NOT_FOUND,
            ClientError::Cloud { status: 401 | 403, .. } | ClientError::Auth(_) => AUTH,
            ClientError::Cloud { .. } => REFUSED,
            ClientError::Unreachable { .. } => UNREACHABLE,
            ClientError::Local(_) => 1,
        }
    }

    pub fn local(message: impl std::fmt::Display) -> Self {
        ClientError::Local(message.to_string())
    }
}

/// One readable line for a transport error: the error and its causes, outermost first.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
