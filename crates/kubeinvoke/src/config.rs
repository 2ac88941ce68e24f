//! The server's settings, resolved from flags and environment into one plain value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::arm::api_version::ApiVersionPolicy;
use crate::dispatcher::DispatcherConfig;
use crate::executor::kubernetes::KubernetesConfig;
use crate::executor::{ExecLimits, ExecutorKind, SandboxPolicy};
use crate::identity::IdentityConfig;
use crate::store::StoreLocation;

#[derive(Debug, Clone)]
pub enum TlsMode {
    /// A CA and leaf generated in the data directory.
    SelfSigned { hostnames: Vec<String> },
    /// The operator's own certificate chain and key (PEM).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP, for use behind a TLS-terminating proxy.
    PlainHttp,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    /// Serve repeated reads (clusters, role assignments, finished results) from memory.
    pub read_cache: bool,
    pub data_dir: PathBuf,
    pub tls: TlsMode,
    pub api_versions: ApiVersionPolicy,
    pub max_body_bytes: usize,
    /// Clusters per page of a list before `nextLink`.
    pub page_size: usize,
    /// Seconds clients are told to wait between polls.
    pub retry_after_secs: u64,
    /// How long a read of a result that is running here waits for it to end before answering 202.
    pub result_wait: Duration,
    /// Fixed subscription/tenant ids; generated once per data directory when absent.
    pub subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub exec: ExecLimits,
    /// Where commands run unless their cluster says otherwise.
    pub executor: ExecutorKind,
    pub kubernetes: KubernetesConfig,
    pub sandbox: SandboxPolicy,
    pub dispatch: DispatcherConfig,
    pub identity: IdentityConfig,
    /// How long running commands may finish after a stop signal.
    pub shutdown_grace: Duration,
    /// Whether the activity log is written (it is by default).
    pub activity_log: bool,
    /// How long activity log events are kept (longer than results).
    pub activity_retention: Duration,
    /// Event subscription deliveries: extra roots, plain-http loopback, retry backoff.
    pub events: crate::events::DeliveryConfig,
}

impl ServerConfig {
    /// The embedded defaults, with everything stored under `data_dir`.
    pub fn embedded(data_dir: PathBuf) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            store: StoreLocation::Sqlite,
            read_cache: true,
            data_dir,
            tls: TlsMode::SelfSigned { hostnames: Vec::new() },
            api_versions: ApiVersionPolicy::Lenient,
            max_body_bytes: 32 * 1024 * 1024,
            page_size: 100,
            retry_after_secs: 1,
            result_wait: Duration::from_millis(250),
            subscription_id: None,
            tenant_id: None,
            exec: ExecLimits::default(),
            executor: ExecutorKind::Local,
            kubernetes: KubernetesConfig::default(),
            sandbox: SandboxPolicy::default(),
            identity: IdentityConfig { builtin_issuer: true, ..IdentityConfig::default() },
            shutdown_grace: Duration::from_secs(30),
            activity_log: true,
            activity_retention: Duration::from_secs(90 * 24 * 3600),
            events: crate::events::DeliveryConfig::default(),
            dispatch: DispatcherConfig {
                max_running: 4,
                queue_capacity: 256,
                retention: Duration::from_secs(7 * 24 * 3600),
                lease: Duration::from_secs(20),
                notify: true,
                poll: Duration::from_secs(5),
                reserve_space: 64 << 20,
            },
        }
    }
}

/// `$XDG_DATA_HOME/kubeinvoke`, else `~/.local/share/kubeinvoke`, else `./kubeinvoke-data`.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("kubeinvoke");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/kubeinvoke"),
        None => PathBuf::from("kubeinvoke-data"),
    }
}
