//! The HTTP(S) server: builds the application from a [`ServerConfig`] and serves it until told
//! to stop. Tests bind port 0 through the same path the binary takes.

mod application;
mod console;
mod entry;
mod handlers;
mod headers;
mod instance;
mod ops;
mod permissions;
mod rendered;
mod request;
mod request_events;
mod serve;
pub(crate) mod tls;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::config::ServerConfig;
use crate::dispatcher::Dispatcher;
use crate::executor::Isolation;
use crate::identity::Identity;
use crate::services::activity_logger::ActivityLogger;
use crate::services::run_driver::RunDriver;
use crate::store::Store;

pub use application::Application;
pub use instance::Instance;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub config: ServerConfig,
    pub instance: Instance,
    /// `https`, or `http` with `--http`; a proxy's `X-Forwarded-Proto` overrides it per request.
    pub scheme: &'static str,
    /// `host:port` to use when a request names no host (HTTP/1.0).
    pub listen_authority: String,
    /// The isolation commands actually get.
    pub isolation: Isolation,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub identity: Arc<Identity>,
    /// Drives fan-out runs; woken when one is submitted or canceled here.
    pub runs: Arc<RunDriver>,
    /// Writes the activity log.
    pub activity: Arc<ActivityLogger>,
    /// Finished results as last sent.
    pub rendered: rendered::RenderedResults,
    /// The webhook client (its roots read once at start), for handshakes at subscription.
    pub webhooks: crate::events::webhook::Webhooks,
    /// Saved commands as compiled once (their patterns), off the async threads.
    pub saved_commands: crate::saved_command::Compiled,
}

/// What answers requests: the front door (`headers.rs`) around the ARM entry point and a router
/// for the rest (health, metrics, the console, the token issuer).
pub fn front_door(state: Arc<AppState>) -> headers::FrontDoor {
    use handlers::oauth;
    let mut router = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/console", get(console::page))
        .route("/console/", get(console::page))
        .route("/console/{module}", get(console::script))
        .route("/console/style.css", get(console::style));
    if state.identity.builtin_issuer() {
        router = router
            .route("/{tenant}/v2.0/.well-known/openid-configuration", get(oauth::tenant_discovery))
            .route("/{tenant}/.well-known/openid-configuration", get(oauth::tenant_discovery))
            .route("/{tenant}/discovery/v2.0/keys", get(oauth::keys))
            .route("/{tenant}/discovery/keys", get(oauth::keys))
            .route("/{tenant}/oauth2/v2.0/token", post(oauth::tenant_token))
            .route("/{tenant}/oauth2/token", post(oauth::tenant_token))
            .route("/{tenant}/oauth2/v2.0/authorize", get(oauth::authorize))
            .route("/adfs/.well-known/openid-configuration", get(oauth::adfs_discovery))
            .route("/adfs/discovery/keys", get(oauth::keys))
            .route("/adfs/oauth2/token", post(oauth::adfs_token))
            .route("/graph/v1.0/directoryObjects/getByIds", post(handlers::graph::get_by_ids));
    }
    let router = router
        .route_layer(axum::middleware::from_fn(headers::report_matched_path))
        .fallback(entry::handle)
        .with_state(state.clone());
    headers::FrontDoor::new(state, router)
}
