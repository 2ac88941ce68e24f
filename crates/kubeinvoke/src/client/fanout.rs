//! `kubeinvoke invoke --tag …` / `--cluster-id …` (fan-out), `kubeinvoke runs` and
//! `kubeinvoke run -i ID`: submit a run, watch its targets fill in, then print each cluster's
//! output under a heading.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{API_VERSION, Answer, Api};
use super::config::Connection;
use super::exit::{COMMAND_FAILED, ClientError, TARGETS_NONZERO, TARGETS_SKIPPED};
use super::output::Output;
use crate::arm::fanout::{CommandRun, CommandRunTarget, FanOutBody, FanOutTargets};
use crate::arm::wire::{ListResult, RunCommandResult};

/// What `invoke` fans out to, and how.
#[derive(Debug, Clone, Default)]
pub struct FanOut {
    pub tags: Vec<String>,
    pub cluster_ids: Vec<String>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
}

/// Submits a fan-out run (scope: the group with `-g`, else the subscription) and follows it.
pub async fn invoke(
    api: &Api,
    group: Option<&str>,
    command: &str,
    context: String,
    fan_out: &FanOut,
    no_wait: bool,
    output: Output,
) -> Result<u8, ClientError> {
    let scope = scope_path(api, group);
    let body = request_body(api, command, context, fan_out)?;
    let path = Api::with_version(&format!("{scope}/runCommand"), API_VERSION);
    let accepted = api.call(Method::POST, &path, Some(body)).await?;
    let location = accepted
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ClientError::local("the server sent no Location"))?;
    let id = accepted.parse::<CommandRun>()?.name;
    if no_wait {
        match output {
            Output::Json => println!("{}", accepted.body),
            Output::Text => {
                let on = group.map(|g| format!(" -g {g}")).unwrap_or_default();
                println!("run id: {id}\nwatch it with: kubeinvoke run{on} -i {id} --watch");
            }
        }
        return Ok(0);
    }
    watch(api, &location, &id, output).await
}

fn request_body(api: &Api, command: &str, context: String, fan_out: &FanOut) -> Result<Value, ClientError> {
    let targets = if fan_out.tags.is_empty() {
        let ids = fan_out.cluster_ids.iter().map(|id| full_cluster_id(api, id)).collect();
        FanOutTargets { cluster_ids: Some(ids), tags: None }
    } else {
        FanOutTargets { cluster_ids: None, tags: Some(tag_pairs(&fan_out.tags)?) }
    };
    let body = FanOutBody {
        command,
        context: &context,
        targets,
        max_concurrency: fan_out.max_concurrency.as_deref(),
        max_errors: fan_out.max_errors.as_deref(),
    };
    serde_json::to_value(body).map_err(ClientError::local)
}

/// `--tag NAME=VALUE` options as an ARM tags object.
pub fn tag_pairs(tags: &[String]) -> Result<Value, ClientError> {
    let mut pairs = serde_json::Map::new();
    for pair in tags {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| ClientError::local(format!("--tag takes NAME=VALUE, got '{pair}'")))?;
        pairs.insert(name.to_string(), Value::String(value.to_string()));
    }
    Ok(Value::Object(pairs))
}

/// A full managed cluster id, or `GROUP/NAME` in the current subscription.
fn full_cluster_id(api: &Api, id: &str) -> String {
    match id.split_once('/') {
        Some((group, name)) if !id.starts_with('/') && !name.contains('/') => api.cluster_path(group, name),
        _ => id.to_string(),
    }
}

pub(crate) fn scope_path(api: &Api, group: Option<&str>) -> String {
    let mut scope = format!("/subscriptions/{}", api.subscription);
    if let Some(group) = group {
        scope.push_str(&format!("/resourceGroups/{group}"));
    }
    scope.push_str("/providers/Microsoft.ContainerService");
    scope
}

/// Follows a run to its end (a live table on stderr), prints each target's output, and returns
/// the exit code the run stands for. Ctrl-C offers to cancel it.
async fn watch(api: &Api, location: &str, id: &str, output: Output) -> Result<u8, ClientError> {
    let mut table = LiveTable::new(output == Output::Text);
    let finished = loop {
        let (answer, run) = tokio::select! {
            read = read_run(api, location) => read?,
            _ = tokio::signal::ctrl_c() => return interrupted(api, location, id).await,
        };
        table.show(&run);
        if answer.status.as_u16() == 200 {
            break (answer.body, run);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (body, run) = finished;
    if output == Output::Json {
        println!("{body}");
    } else {
        print_outputs(api, &run).await?;
    }
    Ok(exit_code(&run))
}

/// The run at `url` with all its targets: the first come with it, the others from its
/// `targetsNextLink`, a page at a time. The answer's body is the run's with every target in it.
async fn read_run(api: &Api, url: &str) -> Result<(Answer, CommandRun), ClientError> {
    let mut answer = api.call(Method::GET, url, None).await?;
    let mut run: CommandRun = answer.parse()?;
    if run.properties.targets_next_link.is_none() {
        return Ok((answer, run));
    }
    while let Some(next) = run.properties.targets_next_link.take() {
        let page: ListResult<CommandRunTarget> = api.call(Method::GET, &next, None).await?.parse()?;
        run.properties.targets.extend(page.value);
        run.properties.targets_next_link = page.next_link;
    }
    if let Some(properties) = answer.body.get_mut("properties").and_then(Value::as_object_mut) {
        properties.remove("targetsNextLink");
        properties.insert("targets".into(), serde_json::to_value(&run.properties.targets).unwrap_or_default());
    }
    Ok((answer, run))
}

async fn interrupted(api: &Api, location: &str, id: &str) -> Result<u8, ClientError> {
    let cancel = std::io::stdin().is_terminal() && {
        eprint!("\ncancel run {id}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
    };
    if cancel {
        api.call(Method::POST, &cancel_url(location), None).await?;
        eprintln!("cancel requested for run {id}");
    } else {
        eprintln!("\nrun {id} goes on; cancel it with: kubeinvoke run -i {id} --cancel");
    }
    Ok(130)
}

fn cancel_url(location: &str) -> String {
    match location.split_once('?') {
        Some((path, query)) => format!("{path}/cancel?{query}"),
        None => format!("{location}/cancel"),
    }
}

/// Each target's output under a heading, in target order.
async fn print_outputs(api: &Api, run: &CommandRun) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    for target in &run.properties.targets {
        let cluster = &target.cluster_id;
        let _ = writeln!(out, "=== {} ({}) ===", short_name(cluster), describe(target));
        let Some(command) = &target.command_id else { continue };
        let path = Api::with_version(&format!("{cluster}/commandResults/{command}"), API_VERSION);
        match api.call(Method::GET, &path, None).await.and_then(|answer| answer.parse::<RunCommandResult>()) {
            Ok(result) => {
                let logs = result.properties.logs.unwrap_or_default();
                let _ = out.write_all(logs.as_bytes());
                if !logs.is_empty() && !logs.ends_with('\n') {
                    let _ = writeln!(out);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "(output unavailable: {e})");
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// 0 only when every target succeeded with exit 0; see [`super::exit::HELP`].
pub(crate) fn exit_code(run: &CommandRun) -> u8 {
    let all = &run.properties.targets;
    if run.properties.provisioning_state == "Canceled"
        || all.iter().any(|t| matches!(t.state.as_ref(), "Failed" | "Canceled"))
    {
        COMMAND_FAILED
    } else if all.iter().any(|t| t.state == "Skipped") {
        TARGETS_SKIPPED
    } else if all.iter().any(|t| t.exit_code != Some(0)) {
        TARGETS_NONZERO
    } else {
        0
    }
}

pub(crate) fn short_name(cluster_id: &str) -> String {
    let parts: Vec<&str> = cluster_id.split('/').collect();
    match parts.as_slice() {
        [.., "resourceGroups", group, _, _, _, name] => format!("{group}/{name}"),
        _ => cluster_id.to_string(),
    }
}

/// `Succeeded, exit 0` / `Skipped: AuthorizationFailed: …`.
fn describe(target: &CommandRunTarget) -> String {
    let state = &target.state;
    match (target.exit_code, target.reason.as_deref()) {
        (Some(code), _) => format!("{state}, exit {code}"),
        (None, Some(reason)) => format!("{state}: {reason}"),
        (None, None) => state.to_string(),
    }
}

/// The targets' states on stderr: redrawn in place on a terminal, else one line per change.
struct LiveTable {
    enabled: bool,
    terminal: bool,
    drawn_lines: usize,
    last: HashMap<String, String>,
}

impl LiveTable {
    fn new(enabled: bool) -> Self {
        LiveTable { enabled, terminal: std::io::stderr().is_terminal(), drawn_lines: 0, last: HashMap::new() }
    }

    fn show(&mut self, run: &CommandRun) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let rows: Vec<(String, String)> =
            run.properties.targets.iter().map(|t| (short_name(&t.cluster_id), describe(t))).collect();
        if self.terminal {
            if self.drawn_lines > 0 {
                let _ = write!(err, "\x1b[{}A", self.drawn_lines);
            }
            let width = rows.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
            for (cluster, state) in &rows {
                let _ = writeln!(err, "\x1b[2K{cluster:<width$}  {state}");
            }
            let _ = writeln!(err, "\x1b[2K{}", counts_line(run));
            self.drawn_lines = rows.len() + 1;
        } else {
            for (cluster, state) in rows {
                if self.last.get(&cluster) != Some(&state) {
                    let _ = writeln!(err, "{cluster}\t{state}");
                    self.last.insert(cluster, state);
                }
            }
        }
        let _ = err.flush();
    }
}

fn counts_line(run: &CommandRun) -> String {
    let p = &run.properties;
    let counts = p
        .counts
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(" · ");
    format!("run {}: {} · {counts}", p.provisioning_state, run.name)
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Runs of this resource group (default: the subscription's).
    #[arg(short = 'g', long = "resource-group")]
    pub group: Option<String>,
    /// How many runs to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

/// `kubeinvoke runs`: newest first.
pub async fn runs(args: RunsArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let path = format!("{}/commandRuns", scope_path(&api, args.group.as_deref()));
    let entries: Vec<Value> = api.list(&path, args.top, 100).await?;
    if args.output == Output::Json {
        println!("{}", json!({ "value": entries }));
        return Ok(0);
    }
    for entry in entries {
        let run: CommandRun = super::api::from_wire(entry)?;
        let p = &run.properties;
        println!(
            "{}\t{}\t{}\t{}\t{}",
            run.name,
            p.provisioning_state,
            counts_line(&run).rsplit(" · ").next().unwrap_or_default(),
            p.created_at,
            p.command
        );
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run's id.
    #[arg(short = 'i', long = "run-id")]
    pub id: String,
    /// The run's resource group, if it was started in one (default: the subscription).
    #[arg(short = 'g', long = "resource-group")]
    pub group: Option<String>,
    /// Follow it to its end and print every cluster's output; exit as `invoke` does.
    #[arg(long, conflicts_with = "cancel")]
    pub watch: bool,
    /// Cancel what has not finished.
    #[arg(long)]
    pub cancel: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

/// `kubeinvoke run -i ID`: the run's targets (and, once it has ended, its exit code).
pub async fn run(args: RunArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let path = format!("{}/commandRuns/{}", scope_path(&api, args.group.as_deref()), args.id);
    let url = Api::with_version(&path, API_VERSION);
    if args.cancel {
        api.call(Method::POST, &cancel_url(&url), None).await?;
        println!("cancel requested for run {}", args.id);
        return Ok(0);
    }
    if args.watch {
        return watch(&api, &url, &args.id, args.output).await;
    }
    let (answer, run) = read_run(&api, &url).await?;
    if args.output == Output::Json {
        println!("{}", answer.body);
    } else {
        for target in &run.properties.targets {
            let command = target.command_id.as_deref().unwrap_or("-");
            println!("{}\t{}\t{command}", short_name(&target.cluster_id), describe(target));
        }
        println!("{}", counts_line(&run));
    }
    Ok(if answer.status.as_u16() == 200 { exit_code(&run) } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &str, targets: Value) -> CommandRun {
        serde_json::from_value(json!({
            "id": "/subscriptions/s/providers/Microsoft.ContainerService/commandRuns/r",
            "name": "r",
            "type": "Microsoft.ContainerService/commandRuns",
            "properties": {
                "provisioningState": state, "command": "true", "maxConcurrency": "10", "maxErrors": "0",
                "createdAt": "2026-12-02T00:00:00Z", "createdBy": "app", "counts": {}, "targets": targets
            }
        }))
        .expect("a run as the server writes it")
    }

    #[test]
    fn exit_codes_say_how_the_worst_target_ended() {
        let ok = json!({"clusterId": "c", "state": "Succeeded", "exitCode": 0});
        assert_eq!(exit_code(&run("Succeeded", json!([ok, ok]))), 0);
        let nonzero = json!({"clusterId": "c", "state": "Succeeded", "exitCode": 2});
        assert_eq!(exit_code(&run("Failed", json!([ok, nonzero]))), TARGETS_NONZERO);
        let skipped = json!({"clusterId": "c", "state": "Skipped", "reason": "AuthorizationFailed: …"});
        assert_eq!(exit_code(&run("Failed", json!([ok, nonzero, skipped]))), TARGETS_SKIPPED);
        let failed = json!({"clusterId": "c", "state": "Failed", "reason": "Timeout"});
        assert_eq!(exit_code(&run("Failed", json!([ok, skipped, failed]))), COMMAND_FAILED);
        assert_eq!(exit_code(&run("Canceled", json!([ok]))), COMMAND_FAILED);
    }

    #[test]
    fn cluster_ids_read_as_group_and_name() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1";
        assert_eq!(short_name(id), "rg/c1");
        assert_eq!(
            cancel_url("https://h/x/commandRuns/1?api-version=v"),
            "https://h/x/commandRuns/1/cancel?api-version=v"
        );
    }
}
