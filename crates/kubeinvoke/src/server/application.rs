//! The composition root: `Application::build` wires the parts — data directory, store,
//! identity, executors, dispatcher, background services, TLS and the listener — in one place, and
//! `serve` runs them until shutdown. Nothing else constructs a service.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::config::{ServerConfig, TlsMode};
use crate::dispatcher::Dispatcher;
use crate::executor::kubernetes::KubernetesExecutor;
use crate::executor::{Executors, LocalExecutor};
use crate::files::create_private_dir;
use crate::identity::Identity;
use crate::services::activity_logger::ActivityLogger;
use crate::services::run_driver::RunDriver;

use super::{AppState, Instance, front_door, headers, instance, ops, rendered, serve, tls};

/// A built server, bound and ready to serve.
pub struct Application {
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    front_door: headers::FrontDoor,
    background: Vec<JoinHandle<()>>,
    pub local_addr: SocketAddr,
    pub base_url: String,
    pub ca_file: Option<PathBuf>,
    /// The bootstrap admin's credentials file, while it exists.
    pub bootstrap_file: Option<PathBuf>,
    pub state: Arc<AppState>,
}

impl Application {
    /// Opens the data directory, the store and the executor, recovers unfinished commands,
    /// prepares TLS and binds the listener.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Self> {
        let rendered = rendered::RenderedResults::new(config.read_cache);
        create_private_dir(&config.data_dir)?;
        let metrics = ops::install_metrics();
        let replica = instance::replica_id(&config.data_dir)?;
        let store = crate::store::open(&config.store, &config.data_dir, config.read_cache).await?;
        let instance = Instance::load_or_create(&config)?.agree(&config, store.as_ref()).await?;
        let identity = Arc::new(
            Identity::new(&config.identity, &config.data_dir, instance.tenant_id.clone(), store.clone()).await?,
        );
        let bootstrap_file = identity.bootstrap(&config.data_dir, &replica).await?;
        let local = LocalExecutor::new(&config.data_dir, config.sandbox.clone(), config.dispatch.max_running)
            .await
            .context("preparing the local executor")?;
        let executors = Executors {
            default: config.executor,
            local: Arc::new(local),
            kubernetes: Arc::new(KubernetesExecutor::new(config.kubernetes.clone())),
        };
        let isolation = executors.default_executor().isolation();
        let outputs_dir = config.data_dir.join("outputs");
        create_private_dir(&outputs_dir)?;
        ops::record_isolation(isolation);
        let (dispatcher, mut background) =
            Dispatcher::start(store.clone(), executors, config.dispatch, config.exec, outputs_dir, replica.clone())
                .await?;
        let (runs, driving) = RunDriver::start(
            store.clone(),
            dispatcher.clone(),
            config.dispatch.poll.min(Duration::from_secs(1)),
            config.dispatch.retention,
        );
        background.push(driving);
        let (activity, logging) = ActivityLogger::start(store.clone(), config.activity_retention, config.activity_log);
        background.push(logging);
        let webhooks = crate::events::webhook::Webhooks::new(&config.events).context("preparing event deliveries")?;
        background.push(crate::events::delivery::Deliverer::start(
            store.clone(),
            webhooks.clone(),
            replica.clone(),
            config.dispatch.lease,
            config.events.retry_base,
        ));

        let (tls, ca_file) =
            match &config.tls {
                TlsMode::SelfSigned { hostnames } => {
                    let files = tls::ensure_self_signed(&config.data_dir, hostnames)?;
                    (Some(tls::server_config(&files.cert, &files.key)?), Some(files.ca_cert))
                }
                TlsMode::Files { cert, key } => (
                    Some(tls::server_config(cert, key).with_context(|| {
                        format!("loading --tls-cert {} / --tls-key {}", cert.display(), key.display())
                    })?),
                    None,
                ),
                TlsMode::PlainHttp => (None, None),
            };
        let scheme = if tls.is_some() { "https" } else { "http" };
        background.push(ops::spawn_upkeep(metrics.clone()));

        let listener =
            std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let host = match local_addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let listen_authority = format!("{host}:{}", local_addr.port());
        let base_url = format!("{scheme}://{listen_authority}");
        let state = Arc::new(AppState {
            store,
            dispatcher,
            config,
            instance,
            scheme,
            listen_authority,
            isolation,
            metrics,
            identity,
            runs,
            activity,
            rendered,
            webhooks,
            saved_commands: crate::saved_command::Compiled::default(),
        });
        Ok(Application {
            listener,
            tls,
            front_door: front_door(state.clone()),
            background,
            local_addr,
            base_url,
            ca_file,
            bootstrap_file,
            state,
        })
    }

    /// What a user needs to connect, printed at startup.
    pub fn banner(&self) -> String {
        let config = &self.state.config;
        let mut lines = vec![
            "kubeinvoke is serving the AKS Run Command API".to_string(),
            format!("  listening on   {}", self.base_url),
        ];
        match &self.ca_file {
            Some(ca) => {
                lines.push(format!("  trust this CA  {}  (e.g. REQUESTS_CA_BUNDLE={})", ca.display(), ca.display()))
            }
            None if self.tls.is_none() => {
                lines.push("  WARNING        plain HTTP: serve this only behind a TLS-terminating proxy".into())
            }
            None => lines.push("  certificate    the one given by --tls-cert".into()),
        }
        lines.push(format!("  data dir       {}", config.data_dir.display()));
        lines.push(format!("  store          {}", config.store));
        lines.push(format!("  executor       {}", config.executor.as_str()));
        lines.push(format!("  isolation      {}", self.state.isolation.as_str()));
        if let Some(file) = &self.bootstrap_file {
            lines.push(format!("  admin login    {}  (appId/password/tenant of the bootstrap Owner)", file.display()));
        }
        lines.push(format!("  subscription   {}", self.state.instance.subscription_id));
        lines.push(format!("  tenant         {}", self.state.instance.tenant_id));
        lines.join("\n")
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets running commands finish
    /// within the configured grace (ending the rest `Failed`/`ServerShutdown`) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dispatcher = self.state.dispatcher.clone();
        let grace = self.state.config.shutdown_grace;
        let drained = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new requests");
            let _ = stop.send(());
            dispatcher.shutdown(grace).await;
        });
        let stopped = async {
            let _ = stopped.await;
        };
        let served = serve::serve(self.listener, self.tls, self.front_door, stopped).await;
        if served.is_ok() {
            // Serving ends only through the shutdown above: wait until the commands are settled.
            let _ = drained.await;
        }
        for task in self.background {
            task.abort();
        }
        served.context("serving")
    }
}
