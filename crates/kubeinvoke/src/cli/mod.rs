//! The command line: `kubeinvoke serve` and its flags (each also a `KUBEINVOKE_*` variable).

pub mod config_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::arm::api_version::{ApiVersionPolicy, KNOWN_CONTAINER_SERVICE_VERSIONS};
use crate::config::{ServerConfig, TlsMode, default_data_dir};
use crate::executor::ExecutorKind;
use crate::executor::helper::SandboxExecArgs;
use crate::executor::kubernetes::{KubernetesConfig, PodTemplate};
use crate::executor::sandbox::SandboxMode;
use crate::store::StoreLocation;

#[derive(Debug, Parser)]
#[command(
    name = "kubeinvoke",
    version,
    about = "A self-hosted AKS Run Command API that really runs the commands",
    after_help = crate::client::exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (HTTPS on 127.0.0.1:8443 with its own certificate, SQLite, local execution).
    Serve(Box<ServeArgs>),
    /// Run a command on a cluster and wait for it; exits with the command's exit code. With
    /// --tag or --cluster-id, on many clusters at once (a fan-out run).
    Invoke(crate::client::invoke::InvokeArgs),
    /// Show a command's result (logs and exit code once it has finished).
    Result(crate::client::invoke::ResultArgs),
    /// Print a command's full output so far, or follow it live (-f).
    Logs(crate::client::invoke::LogsArgs),
    /// Cancel a queued or running command.
    Cancel(crate::client::invoke::CancelArgs),
    /// List a cluster's commands, newest first.
    History(crate::client::invoke::HistoryArgs),
    /// Create, show, list and delete saved commands (run them with `invoke --saved NAME -p k=v`).
    Saved(crate::client::saved::SavedArgs),
    /// List the commands that wait for your approval (four eyes); --watch follows them.
    Approvals(crate::client::approvals::ApprovalsArgs),
    /// Approve a command that waits for approval (never your own).
    Approve(crate::client::approvals::DecideArgs),
    /// Reject a command that waits for approval: it ends Canceled, naming you and why.
    Reject(crate::client::approvals::DecideArgs),
    /// List fan-out runs, newest first.
    Runs(crate::client::fanout::RunsArgs),
    /// Show a fan-out run's targets; --watch follows it to its end, --cancel stops it.
    Run(crate::client::fanout::RunArgs),
    /// Register, show, list and delete clusters.
    Cluster(crate::client::cluster::ClusterArgs),
    /// Create, list and delete resource groups.
    Group(crate::client::group::GroupArgs),
    /// Log in with a service principal (default: the local server's bootstrap admin).
    Login(crate::client::login::LoginArgs),
    /// Manage service principals of a data directory (works with the server running or not).
    Sp(crate::admin::SpArgs),
    /// Verify the activity log's hash chain, or export it as JSON lines.
    Audit(crate::audit::AuditArgs),
    /// Print (or write) the commands that point an az CLI at this server and log in.
    AzLogin(crate::admin::AzLoginArgs),
    /// Internal: the step between the server and a command (limits, uid, Landlock, exec).
    #[command(hide = true)]
    SandboxExec(SandboxExecArgs),
}

/// Whether commands may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecNetwork {
    /// Shared with the host: kubectl can reach the cluster.
    Host,
    /// No network at all (a private, empty network namespace).
    None,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Binds loopback only unless told otherwise.
    #[arg(long, env = "KUBEINVOKE_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Where the database, certificates and working directories live.
    #[arg(long, env = "KUBEINVOKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where state lives: `sqlite` (in the data dir) or `postgres://user:password@host/db`, which
    /// several replicas may share. Prefer the variable for a URL with a password in it.
    #[arg(long, env = "KUBEINVOKE_STORE", default_value = "sqlite", hide_env_values = true)]
    pub store: StoreLocation,
    /// Serve repeated reads (clusters, role assignments, finished results and their rendered
    /// bodies) from memory; other processes' and replicas' writes show after at most a second.
    /// `false`: every read asks the database and renders (the growth benchmark measures the store
    /// alone).
    #[arg(long, env = "KUBEINVOKE_READ_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_cache: bool,
    /// How long a replica's claim on a running command holds without renewal; after that another
    /// replica ends the command `Failed`/`WorkerLost`.
    #[arg(long, env = "KUBEINVOKE_LEASE", default_value = "20s", value_parser = parse_lease)]
    pub lease: Duration,
    /// Learn of submissions at other replicas from PostgreSQL `LISTEN/NOTIFY`; turn it off behind
    /// a pooler that cannot LISTEN (PgBouncer in transaction mode): replicas then poll.
    #[arg(long, env = "KUBEINVOKE_WORK_NOTIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub work_notify: bool,
    /// How often the queue is polled for work (±20% jitter): the only way to learn of other
    /// replicas' submissions without notifications, a safety net with them.
    #[arg(long, env = "KUBEINVOKE_WORK_POLL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub work_poll: Duration,
    /// Extra DNS names or IPs for the generated certificate (repeatable).
    #[arg(long = "hostname", env = "KUBEINVOKE_HOSTNAMES", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// Serve this certificate chain (PEM) instead of the generated one; needs --tls-key.
    #[arg(long, env = "KUBEINVOKE_TLS_CERT", requires = "tls_key", conflicts_with = "http")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "KUBEINVOKE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for use behind a TLS-terminating proxy only.
    #[arg(long, env = "KUBEINVOKE_HTTP")]
    pub http: bool,
    /// Accept only these Microsoft.ContainerService api-versions (comma-separated), or `known`
    /// for every published version that has runCommand. Default: any well-formed version from 2021-03-01.
    #[arg(long, env = "KUBEINVOKE_API_VERSIONS", value_delimiter = ',')]
    pub api_versions: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "KUBEINVOKE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Clusters per page in list responses.
    #[arg(long, env = "KUBEINVOKE_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Seconds between polls that clients are asked to wait (Retry-After).
    #[arg(long, env = "KUBEINVOKE_RETRY_AFTER", default_value_t = 1)]
    pub retry_after: u64,
    /// How long `GET …/commandResults/{id}` of a command running on this server waits for it to
    /// end before answering 202 (`0s`: answer at once).
    #[arg(long, env = "KUBEINVOKE_RESULT_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub result_wait: Duration,
    /// The subscription id `GET /subscriptions` reports (default: generated once per data dir).
    #[arg(long, env = "KUBEINVOKE_SUBSCRIPTION_ID")]
    pub subscription_id: Option<String>,
    /// The tenant id reported to clients (default: generated once per data dir).
    #[arg(long, env = "KUBEINVOKE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Commands running at once.
    #[arg(long, env = "KUBEINVOKE_MAX_RUNNING", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running: u32,
    /// Commands waiting to run before runCommand answers 429.
    #[arg(long, env = "KUBEINVOKE_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Wall-clock limit of one command, e.g. `3600s`, `90m`.
    #[arg(long, env = "KUBEINVOKE_COMMAND_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
    /// Bytes of output kept in a result's logs.
    #[arg(long, env = "KUBEINVOKE_LOG_CAP_BYTES", default_value_t = 512 * 1024)]
    pub log_cap_bytes: usize,
    /// How long finished results stay readable, e.g. `7d`.
    #[arg(long, env = "KUBEINVOKE_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Write the activity log (every write and every command's life, hash-chained). Off, nothing
    /// is logged meanwhile; commands of that time are logged once it is on again.
    #[arg(long, env = "KUBEINVOKE_ACTIVITY_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub activity_log: bool,
    /// How long activity log events are kept, e.g. `90d`; longer than results, so the log still
    /// answers who ran what after the results expired.
    #[arg(long, env = "KUBEINVOKE_ACTIVITY_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub activity_retention: Duration,
    /// A CA (PEM) trusted for event subscription webhooks besides the system's roots.
    #[arg(long, env = "KUBEINVOKE_EVENT_CA")]
    pub event_ca: Option<PathBuf>,
    /// Allow webhooks on loopback addresses, plain http too (for local development only).
    #[arg(long, env = "KUBEINVOKE_EVENT_ALLOW_HTTP_LOOPBACK")]
    pub event_allow_http_loopback: bool,
    /// Allow https webhooks on loopback, private, link-local and unique-local addresses (by
    /// default only public addresses are reached, checked as resolved at every connection).
    #[arg(long, env = "KUBEINVOKE_EVENT_ALLOW_PRIVATE_NETWORKS")]
    pub event_allow_private_networks: bool,
    /// How commands are isolated: the strongest available (`auto`), or exactly one.
    #[arg(long, env = "KUBEINVOKE_SANDBOX", value_enum, default_value_t = SandboxMode::Auto)]
    pub sandbox: SandboxMode,
    /// Refuse to start unless commands get full isolation (bubblewrap).
    #[arg(long, env = "KUBEINVOKE_REQUIRE_SANDBOX")]
    pub require_sandbox: bool,
    /// Where commands run: `local` (this host, sandboxed) or `kubernetes` (a Pod in the target
    /// cluster, as AKS does). A cluster may choose for its own commands (`properties.commandExecutor`).
    #[arg(long, env = "KUBEINVOKE_EXECUTOR", value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// Namespace of command Pods (created when missing).
    #[arg(long, env = "KUBEINVOKE_K8S_NAMESPACE", default_value = "aks-command")]
    pub k8s_namespace: String,
    /// Image of command Pods: must hold bash, kubectl and helm (and unzip or python3 for files).
    #[arg(long, env = "KUBEINVOKE_K8S_IMAGE", default_value = "mcr.microsoft.com/aks/command/runtime")]
    pub k8s_image: String,
    /// Service account of command Pods (default: the namespace's `default`); not used when a
    /// command acts as its caller (`clusterToken`).
    #[arg(long, env = "KUBEINVOKE_K8S_SERVICE_ACCOUNT")]
    pub k8s_service_account: Option<String>,
    /// CPU and memory requests of command Pods.
    #[arg(long, env = "KUBEINVOKE_K8S_CPU_REQUEST", default_value = "200m")]
    pub k8s_cpu_request: String,
    #[arg(long, env = "KUBEINVOKE_K8S_MEMORY_REQUEST", default_value = "500Mi")]
    pub k8s_memory_request: String,
    /// CPU and memory limits of command Pods.
    #[arg(long, env = "KUBEINVOKE_K8S_CPU_LIMIT", default_value = "500m")]
    pub k8s_cpu_limit: String,
    #[arg(long, env = "KUBEINVOKE_K8S_MEMORY_LIMIT", default_value = "1Gi")]
    pub k8s_memory_limit: String,
    /// A toleration for command Pods, as JSON (`{"key":"pool","operator":"Exists","effect":"NoSchedule"}`); repeatable.
    #[arg(long = "k8s-toleration", env = "KUBEINVOKE_K8S_TOLERATIONS", value_delimiter = ';', value_parser = parse_toleration)]
    pub k8s_tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// A node selector label for command Pods, `key=value`; repeatable.
    #[arg(long = "k8s-node-selector", env = "KUBEINVOKE_K8S_NODE_SELECTOR", value_delimiter = ',', value_parser = parse_label)]
    pub k8s_node_selector: Vec<(String, String)>,
    /// The uid (and gid) command Pods run as; never root (Pod Security `restricted`).
    #[arg(long = "k8s-run-as-user", env = "KUBEINVOKE_K8S_RUN_AS_USER", default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..))]
    pub k8s_run_as_user: i64,
    /// How long a command Pod may wait to be scheduled before the command fails.
    #[arg(long, env = "KUBEINVOKE_K8S_START_DEADLINE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub k8s_start_deadline: Duration,
    /// Network for commands (bubblewrap only): `host`, or `none` for no network at all.
    #[arg(long, env = "KUBEINVOKE_EXEC_NETWORK", value_enum, default_value_t = ExecNetwork::Host)]
    pub exec_network: ExecNetwork,
    /// First uid of the range given to commands, one per running command (when run as root).
    /// Every server on a host may share this range: a uid is leased host-wide to one command at a
    /// time (see --exec-uid-locks).
    #[arg(long, env = "KUBEINVOKE_EXEC_FIRST_UID", default_value_t = 61000)]
    pub exec_first_uid: u32,
    /// How many uids the command uid range holds.
    #[arg(long, env = "KUBEINVOKE_EXEC_UID_COUNT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub exec_uid_count: u32,
    /// Directory of the host-wide uid leases (one lock file per uid, root-owned, 0700), shared by
    /// every kubeinvoke server on the host.
    #[arg(long, env = "KUBEINVOKE_EXEC_UID_LOCKS", default_value = crate::executor::uids::DEFAULT_LOCK_DIR)]
    pub exec_uid_locks: PathBuf,
    /// Processes a command may have at once.
    #[arg(long, env = "KUBEINVOKE_MAX_PROCESSES", default_value_t = 256)]
    pub max_processes: u64,
    /// Open files per process.
    #[arg(long, env = "KUBEINVOKE_MAX_OPEN_FILES", default_value_t = 1024)]
    pub max_open_files: u64,
    /// Largest file a command may write, in bytes.
    #[arg(long, env = "KUBEINVOKE_MAX_FILE_BYTES", default_value_t = 1 << 30)]
    pub max_file_bytes: u64,
    /// CPU seconds per process.
    #[arg(long, env = "KUBEINVOKE_MAX_CPU_SECONDS", default_value_t = 3600)]
    pub max_cpu_seconds: u64,
    /// Address space per process, in bytes.
    #[arg(long, env = "KUBEINVOKE_MAX_MEMORY_BYTES", default_value_t = 4 << 30)]
    pub max_memory_bytes: u64,
    /// Disk a command's working directory (and temp directory) may use, in bytes.
    #[arg(long, env = "KUBEINVOKE_MAX_WORKDIR_BYTES", default_value_t = 1 << 30)]
    pub max_workdir_bytes: u64,
    /// Entries a context zip may have.
    #[arg(long, env = "KUBEINVOKE_MAX_CONTEXT_ENTRIES", default_value_t = 10_000)]
    pub max_context_entries: usize,
    /// Free space, in bytes, the data directory keeps for the commands already accepted: below
    /// it runCommand answers 507 until space is freed.
    #[arg(long, env = "KUBEINVOKE_RESERVE_SPACE", default_value_t = 64 << 20)]
    pub reserve_space: u64,
    /// Output kept in full per command for the live-logs endpoint, in bytes.
    #[arg(long, env = "KUBEINVOKE_MAX_OUTPUT_BYTES", default_value_t = 64 << 20)]
    pub max_output_bytes: u64,
    /// Bytes a context zip may unpack to.
    #[arg(long, env = "KUBEINVOKE_MAX_CONTEXT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_context_bytes: u64,
    /// Serve the built-in token issuer and trust its tokens.
    #[arg(long, env = "KUBEINVOKE_BUILTIN_ISSUER", default_value_t = true, action = clap::ArgAction::Set)]
    pub builtin_issuer: bool,
    /// Also trust tokens of this issuer (its discovery document names its keys); repeatable.
    #[arg(long = "trusted-issuer", env = "KUBEINVOKE_TRUSTED_ISSUERS", value_delimiter = ',')]
    pub trusted_issuers: Vec<String>,
    /// A CA (PEM) to trust when fetching trusted issuers' keys.
    #[arg(long, env = "KUBEINVOKE_TRUSTED_ISSUER_CA")]
    pub trusted_issuer_ca: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long running commands may finish before they are stopped.
    #[arg(long, env = "KUBEINVOKE_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format on stderr.
    #[arg(long, env = "KUBEINVOKE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A config file; `[serve]` holds these flags by their long names (flags > environment > file).
    /// Default: ~/.config/kubeinvoke/config.toml when it exists.
    #[arg(long, env = "KUBEINVOKE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServeArgs {
    pub fn into_config(self) -> ServerConfig {
        let mut config = ServerConfig::embedded(self.data_dir.unwrap_or_else(default_data_dir));
        config.listen = self.listen;
        config.tls = match (self.http, self.tls_cert, self.tls_key) {
            (true, _, _) => TlsMode::PlainHttp,
            (false, Some(cert), Some(key)) => TlsMode::Files { cert, key },
            _ => TlsMode::SelfSigned { hostnames: self.hostnames },
        };
        config.api_versions = match self.api_versions.as_slice() {
            [] => ApiVersionPolicy::Lenient,
            [known] if known == "known" => {
                ApiVersionPolicy::Strict(KNOWN_CONTAINER_SERVICE_VERSIONS.iter().map(|v| v.to_string()).collect())
            }
            list => ApiVersionPolicy::Strict(list.to_vec()),
        };
        config.max_body_bytes = self.max_body_bytes;
        config.page_size = self.page_size as usize;
        config.retry_after_secs = self.retry_after;
        config.result_wait = self.result_wait;
        config.subscription_id = self.subscription_id;
        config.tenant_id = self.tenant_id;
        config.exec.timeout = self.command_timeout;
        config.exec.log_cap = self.log_cap_bytes;
        config.exec.max_processes = self.max_processes;
        config.exec.max_open_files = self.max_open_files;
        config.exec.max_file_bytes = self.max_file_bytes;
        config.exec.max_cpu_seconds = self.max_cpu_seconds;
        config.exec.max_memory_bytes = self.max_memory_bytes;
        config.exec.max_workdir_bytes = self.max_workdir_bytes;
        config.exec.max_output_bytes = self.max_output_bytes;
        config.exec.context.max_entries = self.max_context_entries;
        config.exec.context.max_unpacked_bytes = self.max_context_bytes;
        config.sandbox.mode = self.sandbox;
        config.sandbox.require_full = self.require_sandbox;
        config.sandbox.network = self.exec_network == ExecNetwork::Host;
        config.sandbox.first_uid = self.exec_first_uid;
        config.sandbox.uid_count = self.exec_uid_count;
        config.sandbox.uid_locks = self.exec_uid_locks;
        config.identity.builtin_issuer = self.builtin_issuer;
        config.identity.trusted_issuers = self.trusted_issuers;
        config.identity.trusted_issuer_ca = self.trusted_issuer_ca;
        config.shutdown_grace = self.shutdown_grace;
        // The log answers who ran what after results expired: never kept shorter than results.
        config.activity_retention = self.activity_retention.max(self.retention);
        config.activity_log = self.activity_log;
        config.events.extra_ca = self.event_ca;
        config.events.addresses = crate::events::endpoint::AddressPolicy {
            allow_loopback: self.event_allow_http_loopback,
            allow_private: self.event_allow_private_networks,
        };
        config.dispatch.max_running = self.max_running as usize;
        config.dispatch.queue_capacity = self.queue_capacity;
        config.dispatch.retention = self.retention;
        config.dispatch.lease = self.lease;
        config.dispatch.notify = self.work_notify;
        config.dispatch.poll = self.work_poll;
        config.dispatch.reserve_space = self.reserve_space;
        config.executor = self.executor;
        config.kubernetes = KubernetesConfig {
            template: PodTemplate {
                namespace: self.k8s_namespace,
                image: self.k8s_image,
                service_account: self.k8s_service_account,
                cpu_request: self.k8s_cpu_request,
                memory_request: self.k8s_memory_request,
                cpu_limit: self.k8s_cpu_limit,
                memory_limit: self.k8s_memory_limit,
                tolerations: self.k8s_tolerations,
                node_selector: self.k8s_node_selector.into_iter().collect(),
                run_as_user: self.k8s_run_as_user,
            },
            start_deadline: self.k8s_start_deadline,
        };
        config.store = self.store;
        config.read_cache = self.read_cache;
        config
    }
}

fn parse_toleration(text: &str) -> Result<k8s_openapi::api::core::v1::Toleration, String> {
    serde_json::from_str(text).map_err(|e| format!("not a Kubernetes toleration as JSON: {e}"))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err("expected key=value".into()),
    }
}

fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lease < Duration::from_secs(1) {
        return Err("a lease shorter than 1s would expire between renewals".into());
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_safe() {
        let Ok(Cli { command: Command::Serve(args) }) = Cli::try_parse_from(["kubeinvoke", "serve"]) else { panic!() };
        let args = *args;
        let config = args.into_config();
        assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
        assert!(matches!(config.tls, TlsMode::SelfSigned { .. }));
        assert!(matches!(config.api_versions, ApiVersionPolicy::Lenient));
        assert_eq!(config.exec.log_cap, 512 * 1024);
        assert_eq!(config.exec.timeout, Duration::from_secs(3600));
        assert_eq!(config.dispatch.retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.max_body_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn tls_flags_pair_up_and_exclude_http() {
        assert!(Cli::try_parse_from(["kubeinvoke", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["kubeinvoke", "serve", "--tls-cert", "c", "--tls-key", "k", "--http"]).is_err());
        let Ok(Cli { command: Command::Serve(args) }) =
            Cli::try_parse_from(["kubeinvoke", "serve", "--api-versions", "known"])
        else {
            panic!()
        };
        let args = *args;
        assert!(matches!(args.into_config().api_versions, ApiVersionPolicy::Strict(v) if v.len() > 40));
    }
}
