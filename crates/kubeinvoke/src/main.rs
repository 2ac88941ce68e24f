use std::io::Write;

use clap::Parser;
use kubeinvoke::cli::{Cli, Command, LogFormat, ServeArgs};
use kubeinvoke::server::Application;
use tracing_subscriber::EnvFilter;

/// mimalloc: glibc's allocator made request threads wait on arena locks (with the log writer of
/// the time, memory allocated on a request's thread was freed on the writer's); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = kubeinvoke::cli::config_file::apply_config_file(&args) {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(kubeinvoke::client::exit::USAGE);
    }
    let cli = Cli::parse();
    match cli.command {
        // The sandbox helper must stay single-threaded until it execs: no runtime, no logging.
        Command::SandboxExec(args) => std::process::ExitCode::from(kubeinvoke::executor::helper::run(args) as u8),
        Command::Serve(args) => run_server(*args),
        Command::Sp(args) => report(current_thread().and_then(|rt| rt.block_on(kubeinvoke::admin::sp(args)))),
        Command::AzLogin(args) => report(kubeinvoke::admin::az_login(args)),
        Command::Audit(args) => match current_thread().and_then(|rt| rt.block_on(kubeinvoke::audit::audit(args))) {
            Ok(code) => std::process::ExitCode::from(code),
            Err(e) => report(Err(e)),
        },
        Command::Invoke(args) => client(kubeinvoke::client::invoke::invoke(args)),
        Command::Result(args) => client(kubeinvoke::client::invoke::result(args)),
        Command::Logs(args) => client(kubeinvoke::client::invoke::logs(args)),
        Command::Cancel(args) => client(kubeinvoke::client::invoke::cancel(args)),
        Command::History(args) => client(kubeinvoke::client::invoke::history(args)),
        Command::Saved(args) => client(kubeinvoke::client::saved::saved(args)),
        Command::Approvals(args) => client(kubeinvoke::client::approvals::approvals(args)),
        Command::Approve(args) => client(kubeinvoke::client::approvals::decide(args, true)),
        Command::Reject(args) => client(kubeinvoke::client::approvals::decide(args, false)),
        Command::Runs(args) => client(kubeinvoke::client::fanout::runs(args)),
        Command::Run(args) => client(kubeinvoke::client::fanout::run(args)),
        Command::Cluster(args) => client(kubeinvoke::client::cluster::cluster(args)),
        Command::Group(args) => client(kubeinvoke::client::group::group(args)),
        Command::Login(args) => client(kubeinvoke::client::login::login(args)),
    }
}

/// Runs a client command: its exit code, or one error line and the error's exit code.
fn client(
    command: impl std::future::Future<Output = Result<u8, kubeinvoke::client::ClientError>>,
) -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match current_thread() {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => Err(kubeinvoke::client::ClientError::local(e)),
    };
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
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
    let filter = EnvFilter::try_from_env("KUBEINVOKE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Log lines are written by a thread of their own, in batches, off the request path; none is
    // dropped (a burst waits for the writer). See `log_writer` for why not tracing-appender.
    let (writer, flush_on_drop) = kubeinvoke::log_writer::BatchedLog::start(std::io::stderr());
    let format = kubeinvoke::log_format::LineFormat { json: args.log_format == LogFormat::Json };
    tracing_subscriber::fmt().with_env_filter(filter).event_format(format).with_writer(writer).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(args));
    drop(runtime);
    // Every pending log line is out before the last word.
    drop(flush_on_drop);
    report(served)
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
}
