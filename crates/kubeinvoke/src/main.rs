use std::io::Write;

use clap::Parser;
use kubeinvoke::cli::{Cli, Command};
use kubeinvoke::server::Application;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (rustls panics if it must guess between two).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KUBEINVOKE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: kubeinvoke::cli::ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(args.into_config()).await?;
    // One write, and no panic if nobody reads stdout any more.
    let _ = writeln!(std::io::stdout().lock(), "{}", app.banner());
    app.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
