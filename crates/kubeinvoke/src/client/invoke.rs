//! `kubeinvoke invoke` and `kubeinvoke result`: run a command and wait for it as long as it runs.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{API_VERSION, Answer, Api};
use super::config::Connection;
use super::exit::{COMMAND_FAILED, ClientError};
use super::fanout::FanOut;
use crate::arm::wire::{CommandHistoryEntry, RunCommandBody, RunCommandResult, RunSavedCommandBody};
use crate::command::CommandState;

use super::output::Output;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("fan_out").args(["tags", "cluster_ids"]).multiple(true))]
pub struct InvokeArgs {
    /// The cluster's resource group; with --tag or --cluster-id, the run's scope (default: the
    /// subscription).
    #[arg(short = 'g', long = "resource-group", required_unless_present_any = ["tags", "cluster_ids"])]
    pub group: Option<String>,
    /// The cluster. Without it, --tag or --cluster-id fan the command out to many clusters.
    #[arg(short = 'n', long = "name", required_unless_present_any = ["tags", "cluster_ids"], conflicts_with_all = ["tags", "cluster_ids"])]
    pub name: Option<String>,
    /// Fan out to every cluster with this ARM tag (NAME=VALUE, repeatable: all must match).
    #[arg(long = "tag", id = "tags", value_name = "NAME=VALUE", conflicts_with = "cluster_ids")]
    pub tags: Vec<String>,
    /// Fan out to these clusters (a managed cluster id or GROUP/NAME, repeatable).
    #[arg(long = "cluster-id", id = "cluster_ids", value_name = "ID")]
    pub cluster_ids: Vec<String>,
    /// Fan-out: targets running at once, a count or a share ("25%"; default 10).
    #[arg(long, requires = "fan_out")]
    pub max_concurrency: Option<String>,
    /// Fan-out: once more targets than this fail or exit non-zero, skip the rest (default: never).
    #[arg(long, requires = "fan_out")]
    pub max_errors: Option<String>,
    /// The shell line to run.
    #[arg(short = 'c', long, required_unless_present = "saved", conflicts_with = "saved")]
    pub command: Option<String>,
    /// Run this saved command (its name in the cluster's group or the subscription, or its id).
    #[arg(long, conflicts_with_all = ["tags", "cluster_ids", "files"], requires = "name")]
    pub saved: Option<String>,
    /// A saved command's parameter, NAME=VALUE (repeatable); NAME=@FILE reads the value from a
    /// file, NAME=@- from standard input (for secrets).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", requires = "saved")]
    pub params: Vec<String>,
    /// Stop the command after this many seconds (can only lower the server's and cluster's limits).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Files to attach (repeatable); `.` attaches the current directory with relative paths.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<std::path::PathBuf>,
    /// Print the command id and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

/// Which command: `-g GROUP -n CLUSTER -i ID`.
#[derive(Debug, Args)]
pub struct CommandRef {
    #[arg(short = 'g', long = "resource-group")]
    pub group: String,
    #[arg(short = 'n', long = "name")]
    pub name: String,
    #[arg(short = 'i', long = "command-id")]
    pub id: String,
}

impl CommandRef {
    fn path(&self, api: &Api) -> String {
        api.command_path(&self.group, &self.name, &self.id)
    }
}

#[derive(Debug, Args)]
pub struct ResultArgs {
    #[command(flatten)]
    pub target: CommandRef,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn invoke(args: InvokeArgs) -> Result<u8, ClientError> {
    let context = if args.files.is_empty() { String::new() } else { zip_files(&args.files)? };
    let api = Api::connect(&args.connection).await?;
    let (Some(group), Some(name)) = (args.group.as_deref(), args.name.as_deref()) else {
        let fan_out = FanOut {
            tags: args.tags.clone(),
            cluster_ids: args.cluster_ids.clone(),
            max_concurrency: args.max_concurrency.clone(),
            max_errors: args.max_errors.clone(),
        };
        let command = args.command.clone().unwrap_or_default();
        return super::fanout::invoke(
            &api,
            args.group.as_deref(),
            &command,
            context,
            &fan_out,
            args.no_wait,
            args.output,
        )
        .await;
    };
    let (action, body) = match &args.saved {
        Some(saved) => {
            let id = super::saved::resolve(&api, group, saved).await?;
            let parameters = super::saved::parameter_values(&args.params)?;
            let body =
                RunSavedCommandBody { saved_command: &id, parameters: &parameters, timeout_in_seconds: args.timeout };
            ("runSavedCommand", serde_json::to_value(body).map_err(ClientError::local)?)
        }
        None => {
            let body = RunCommandBody {
                command: args.command.as_deref(),
                context: &context,
                timeout_in_seconds: args.timeout,
            };
            ("runCommand", serde_json::to_value(body).map_err(ClientError::local)?)
        }
    };
    let path = Api::with_version(&format!("{}/{action}", api.cluster_path(group, name)), API_VERSION);
    let accepted = api.call(Method::POST, &path, Some(body)).await?;
    let location =
        header(&accepted.headers, "location").ok_or_else(|| ClientError::local("the server sent no Location"))?;
    let id = command_id(&location);
    if args.no_wait {
        match args.output {
            Output::Json => println!("{}", json!({"id": id, "location": location})),
            Output::Text => {
                println!("command id: {id}\nget its result with: kubeinvoke result -g {group} -n {name} -i {id}")
            }
        }
        return Ok(0);
    }
    let result_path = api.command_path(group, name, &id);
    let live = args.output == Output::Text;
    let streamed = async {
        if !live {
            return None;
        }
        let logs = Api::with_version(&format!("{result_path}/logs"), API_VERSION) + "&follow=true";
        api.stream(&logs, std::io::stdout()).await.ok()
    };
    let waited = async {
        tokio::select! {
            result = wait(&api, &location, live) => result.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    };
    tokio::pin!(streamed, waited);
    let mut stream_ended: Option<Option<u64>> = None;
    let finished = loop {
        tokio::select! {
            ended = &mut streamed, if stream_ended.is_none() => stream_ended = Some(ended),
            finished = &mut waited => break finished?,
        }
    };
    let Some(result) = finished else {
        return interrupted(&api, &result_path, &id, group, name).await;
    };
    // The stream closes by itself once the command has ended; give it a moment to flush.
    let streamed = match stream_ended {
        Some(ended) => ended,
        None => tokio::time::timeout(Duration::from_secs(10), streamed).await.ok().flatten(),
    };
    report(&result, args.output, streamed.is_some())
}

/// Ctrl-C while waiting: on a terminal, ask whether to cancel the command; else leave it running.
async fn interrupted(api: &Api, result_path: &str, id: &str, group: &str, name: &str) -> Result<u8, ClientError> {
    use std::io::IsTerminal;
    let cancel = std::io::stdin().is_terminal() && {
        eprint!("\ncancel command {id}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
    };
    if cancel {
        api.call(Method::POST, &Api::with_version(&format!("{result_path}/cancel"), API_VERSION), None).await?;
        eprintln!("canceled {id}");
    } else {
        eprintln!("\ncommand {id} keeps running; stop it with: kubeinvoke cancel -g {group} -n {name} -i {id}");
    }
    Ok(130)
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: CommandRef,
    /// Keep streaming until the command ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Start at this byte of the output (to resume after a disconnect).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub target: CommandRef,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(short = 'g', long = "resource-group")]
    pub group: String,
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// How many commands to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

/// `kubeinvoke logs`: the full output so far (or live with `-f`).
pub async fn logs(args: LogsArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let base = format!("{}/logs", args.target.path(&api));
    let mut path = Api::with_version(&base, API_VERSION) + &format!("&offset={}", args.offset);
    if args.follow {
        path.push_str("&follow=true");
    }
    api.stream(&path, std::io::stdout()).await?;
    Ok(0)
}

/// `kubeinvoke cancel`.
pub async fn cancel(args: CancelArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let path = format!("{}/cancel", args.target.path(&api));
    api.call(Method::POST, &Api::with_version(&path, API_VERSION), None).await?;
    println!("cancel requested for {}", args.target.id);
    Ok(0)
}

/// `kubeinvoke history`: newest first.
pub async fn history(args: HistoryArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let path = format!("{}/commandResults", api.cluster_path(&args.group, &args.name));
    let entries: Vec<Value> = api.list(&path, args.top, 1000).await?;
    if args.output == Output::Json {
        println!("{}", json!({ "value": entries }));
        return Ok(0);
    }
    for entry in entries {
        let e: CommandHistoryEntry = super::api::from_wire(entry)?;
        let p = &e.properties;
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            e.id,
            p.result.provisioning_state.as_str(),
            p.result.exit_code.map_or("-".to_string(), |c| c.to_string()),
            p.submitted_at,
            p.submitted_by,
            p.command
        );
    }
    Ok(0)
}

pub async fn result(args: ResultArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let path = Api::with_version(&args.target.path(&api), API_VERSION);
    let answer = api.call(Method::GET, &path, None).await?;
    if answer.status.as_u16() == 202 {
        match args.output {
            Output::Json => println!("{}", answer.body),
            Output::Text => {
                let p = answer.parse::<RunCommandResult>()?.properties;
                let started = p.started_at.map(|s| format!(", started at {s}")).unwrap_or_default();
                println!("command {} is {}{started}", args.target.id, p.provisioning_state.as_str());
            }
        }
        return Ok(0);
    }
    report(&answer, args.output, false)
}

/// How the progress line names a command held for approval.
const WAITING_FOR_APPROVAL: &str = "waiting for approval";

/// Polls until the result is final, showing progress: a spinner on a terminal, else a line per state.
async fn wait(api: &Api, location: &str, streaming: bool) -> Result<Answer, ClientError> {
    let started = Instant::now();
    // A spinner and streamed output would fight over the terminal: stream wins.
    let spinner = (std::io::stderr().is_terminal() && !streaming).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last_state = String::new();
    loop {
        let answer = api.call(Method::GET, location, None).await?;
        if answer.status.as_u16() == 200 {
            if let Some(bar) = &spinner {
                bar.finish_and_clear();
            }
            return Ok(answer);
        }
        let state = answer.parse::<RunCommandResult>()?.properties.provisioning_state;
        let elapsed = started.elapsed().as_secs();
        let state = match state {
            CommandState::PendingApproval => {
                if last_state != WAITING_FOR_APPROVAL {
                    let note = format!(
                        "waiting for approval: command {} runs once an approver approves it (they see it in `kubeinvoke approvals`)",
                        command_id(location)
                    );
                    match &spinner {
                        Some(bar) => bar.println(note),
                        None => eprintln!("{note}"),
                    }
                }
                WAITING_FOR_APPROVAL.to_string()
            }
            other => other.as_str().to_string(),
        };
        match &spinner {
            Some(bar) => bar.set_message(format!("{state} · {elapsed}s")),
            None if state != last_state && state != WAITING_FOR_APPROVAL => eprintln!("{state} ({elapsed}s)"),
            None => {}
        }
        last_state = state;
        let retry = header(&answer.headers, "retry-after").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1);
        tokio::time::sleep(Duration::from_millis((retry * 1000).clamp(200, 1000))).await;
    }
}

/// Prints a finished result (its logs unless they were streamed already) and returns the
/// process exit code it stands for.
fn report(answer: &Answer, output: Output, streamed: bool) -> Result<u8, ClientError> {
    let p = answer.parse::<RunCommandResult>()?.properties;
    if output == Output::Json {
        println!("{}", answer.body);
    } else if let Some(logs) = p.logs.as_deref().filter(|_| !streamed) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(logs.as_bytes());
        let _ = out.flush();
    }
    Ok(match p.provisioning_state {
        CommandState::Succeeded => p.exit_code.map_or(0, |code| code.clamp(0, 255) as u8),
        state => {
            let reason = p.reason.as_deref().unwrap_or("no reason given");
            eprintln!("error: the command ended {}: {reason}", state.as_str());
            COMMAND_FAILED
        }
    })
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn command_id(location: &str) -> String {
    location.split("/commandResults/").nth(1).and_then(|rest| rest.split('?').next()).unwrap_or_default().to_string()
}

/// The `context` as az builds it: a stored zip, base64 with line breaks; a file goes to the root
/// under its name, a directory (`.`) with paths relative to it, hidden files included.
fn zip_files(files: &[std::path::PathBuf]) -> Result<String, ClientError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: String, path: &Path| -> Result<(), ClientError> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(path).map_err(|e| ClientError::local(format!("reading {}: {e}", path.display())))?;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0o644);
        zip.start_file(name, options.unix_permissions(mode)).map_err(ClientError::local)?;
        zip.write_all(&data).map_err(ClientError::local)
    };
    for file in files {
        if file.is_dir() {
            for path in walk(file).map_err(|e| ClientError::local(format!("reading {}: {e}", file.display())))? {
                let relative = path.strip_prefix(file).unwrap_or(&path).to_string_lossy().into_owned();
                add(relative, &path)?;
            }
        } else {
            let name =
                file.file_name().ok_or_else(|| ClientError::local(format!("{} is not a file", file.display())))?;
            add(name.to_string_lossy().into_owned(), file)?;
        }
    }
    let bytes = zip.finish().map_err(ClientError::local)?.into_inner();
    Ok(crate::context::encode(&bytes))
}

fn walk(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files.extend(walk(&entry.path())?);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}
