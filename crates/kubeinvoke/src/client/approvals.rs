//! `kubeinvoke approvals`, `approve` and `reject`: four eyes from the approver's side. What waits
//! for the caller is listed (and followed with `--watch`); a decision names the command by its id
//! alone, its cluster found among what waits when `-g`/`-n` are not given.

use std::collections::HashSet;
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::api::{API_VERSION, Api};
use super::config::Connection;
use super::exit::ClientError;
use super::fanout::{scope_path, short_name};
use super::output::Output;
use crate::arm::approvals::{ApprovalView, DecisionRequest};
use crate::arm::fanout::CommandRun;
use crate::arm::wire::ListResult;
use crate::command::CommandState;

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Only what waits in this resource group (default: the whole subscription).
    #[arg(short = 'g', long = "resource-group")]
    pub group: Option<String>,
    /// Keep watching, printing each command as it starts to wait for you (until Ctrl-C).
    #[arg(long)]
    pub watch: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The command's id.
    #[arg(short = 'i', long = "command-id", required_unless_present = "run_id", conflicts_with = "run_id")]
    pub id: Option<String>,
    /// A fan-out run's id instead: it is approved once, as a whole (-g: the run's resource group,
    /// if it was started in one).
    #[arg(long = "run-id")]
    pub run_id: Option<String>,
    /// Why: recorded with the decision and in the activity log.
    #[arg(short = 'm', long = "reason")]
    pub reason: String,
    /// The command's resource group and cluster (default: found among what waits for you).
    #[arg(short = 'g', long = "resource-group")]
    pub group: Option<String>,
    #[arg(short = 'n', long = "name", requires = "group")]
    pub name: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

/// `kubeinvoke approvals [--watch]`.
pub async fn approvals(args: ApprovalsArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let mut shown = HashSet::new();
    loop {
        let waiting = pending(&api, args.group.as_deref()).await?;
        for view in waiting.into_iter().filter(|v| shown.insert(v.name.clone())) {
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&view).map_err(ClientError::local)?),
                Output::Text => println!("{}", line(&view)),
            }
        }
        if !args.watch {
            if shown.is_empty() && args.output == Output::Text {
                eprintln!("nothing waits for your approval");
            }
            return Ok(0);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(130),
        }
    }
}

/// `kubeinvoke approve` / `kubeinvoke reject`.
pub async fn decide(args: DecideArgs, approve: bool) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let verb = if approve { "approve" } else { "reject" };
    let body =
        serde_json::to_value(DecisionRequest { reason: Some(args.reason.clone()) }).map_err(ClientError::local)?;
    if let Some(run) = &args.run_id {
        let path = format!("{}/commandRuns/{run}/{verb}", scope_path(&api, args.group.as_deref()));
        let answer = api.call(Method::POST, &Api::with_version(&path, API_VERSION), Some(body)).await?;
        let run: CommandRun = answer.parse()?;
        match args.output {
            Output::Json => println!("{}", answer.body),
            Output::Text => println!("{verb}d run {}: it is {}", run.name, run.properties.provisioning_state),
        }
        return Ok(0);
    }
    let id = args.id.clone().unwrap_or_default();
    let result_path = match (&args.group, &args.name) {
        (Some(group), Some(name)) => api.command_path(group, name, &id),
        (Some(_), None) | (None, Some(_)) => return Err(ClientError::local("give both -g and -n, or neither")),
        (None, None) => {
            let waiting = pending(&api, None).await?;
            let found = waiting.into_iter().find(|v| v.name.eq_ignore_ascii_case(&id)).ok_or_else(|| {
                ClientError::local(format!(
                    "command {id} does not wait for your approval (see kubeinvoke approvals); give -g and -n if you know its cluster"
                ))
            })?;
            format!("{}/commandResults/{}", found.properties.cluster_id, found.name)
        }
    };
    let path = Api::with_version(&format!("{result_path}/{verb}"), API_VERSION);
    let answer = api.call(Method::POST, &path, Some(body)).await?;
    if args.output == Output::Json {
        println!("{}", answer.body);
        return Ok(0);
    }
    let view: ApprovalView = answer.parse()?;
    let p = &view.properties;
    let approvals = p.approved();
    println!(
        "{}",
        match p.provisioning_state {
            CommandState::PendingApproval => {
                format!("approved {}: {approvals} of {} approvals, it waits for more", view.name, p.approvals_needed)
            }
            CommandState::Canceled => format!("rejected {}: it will not run", view.name),
            _ => format!("approved {}: it runs now", view.name),
        }
    );
    Ok(0)
}

async fn pending(api: &Api, group: Option<&str>) -> Result<Vec<ApprovalView>, ClientError> {
    let path = Api::with_version(&format!("{}/pendingApprovals", scope_path(api, group)), API_VERSION);
    let listed: ListResult<ApprovalView> = api.call(Method::GET, &path, None).await?.parse()?;
    Ok(listed.value)
}

/// `ID  GROUP/CLUSTER  approvals 0/2  until …  by …  COMMAND`.
fn line(view: &ApprovalView) -> String {
    let p = &view.properties;
    let approvals = p.approved();
    let what = match &p.saved_command {
        Some(saved) => format!("saved {} {}", saved.rsplit('/').next().unwrap_or(saved), json!(p.parameters)),
        None => p.command.clone(),
    };
    let files = if p.files.is_empty() { String::new() } else { format!(" (+{} files)", p.files.len()) };
    format!(
        "{}\t{}\tapprovals {approvals}/{}\tuntil {}\tby {}\t{what}{files}",
        view.name,
        short_name(&p.cluster_id),
        p.approvals_needed,
        p.expires_at,
        p.requested_by
    )
}
