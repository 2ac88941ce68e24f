//! `kubeinvoke group create|show|list|delete`: resource groups.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::api::Api;
use super::config::Connection;
use super::exit::ClientError;
use super::output::{Output, lines, print};
use crate::arm::wire::{ListResult, ResourceGroup};

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    Create {
        #[arg(short = 'n', long)]
        name: String,
        #[arg(short = 'l', long, default_value = "local")]
        location: String,
    },
    List,
    Delete {
        #[arg(short = 'n', long)]
        name: String,
    },
}

pub async fn group(args: GroupArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    match args.command {
        GroupCommand::Create { name, location } => {
            let created = api
                .call(Method::PUT, &Api::resources_version(&api.group_path(&name)), Some(json!({"location": location})))
                .await?;
            print(args.output, &created.body, |g: ResourceGroup| format!("created {}", g.name))?;
        }
        GroupCommand::List => {
            let listed = api
                .call(
                    Method::GET,
                    &Api::resources_version(&format!("/subscriptions/{}/resourcegroups", api.subscription)),
                    None,
                )
                .await?;
            print(args.output, &listed.body, |l: ListResult<ResourceGroup>| {
                lines(l, |g| format!("{}\t{}", g.name, g.location))
            })?;
        }
        GroupCommand::Delete { name } => {
            api.call(Method::DELETE, &Api::resources_version(&api.group_path(&name)), None).await?;
            print(args.output, &json!({"deleted": name}), |_: Value| format!("deleted {name}"))?;
        }
    }
    Ok(0)
}
