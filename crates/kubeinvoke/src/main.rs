use std::io::Write;

use clap::Parser;
use kubeinvoke::cli::{Cli, Command, ServeArgs};
use kubeinvoke::server::Application;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The sandbox helper must stay single-threaded until it execs: no runtime, no logging.
        Command::SandboxExec(args) => std::process::ExitCode::from(kubeinvoke::executor::helper::run(args) as u8),
        Command::Serve(args) => run_server(*args),
        Command::Sp(args) => report(current_thread().and_then(|rt| rt.block_on(kubeinvoke::admin::sp(args)))),
        Command::AzLogin(args) => report(kubeinvoke::admin::az_login(args)),
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn report(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_server(args: ServeArgs) -> std::process::ExitCode {
    // Everything the server creates is private unless it says otherwise.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // One crypto provider for the whole process (rustls panics if it must guess between two).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KUBEINVOKE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(serve(args)))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
