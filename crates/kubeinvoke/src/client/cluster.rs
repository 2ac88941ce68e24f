//! `kubeinvoke cluster create|show|list|delete`: registered clusters.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{API_VERSION, Api};
use super::config::Connection;
use super::exit::ClientError;
use super::output::{Output, lines, print};
use crate::arm::wire::{ClusterRegistration, CommandApproval, ListResult, ManagedClusterView, RegistrationProperties};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register an existing cluster from a kubeconfig context.
    Create {
        #[arg(short = 'g', long = "resource-group")]
        group: String,
        #[arg(short = 'n', long)]
        name: String,
        /// The kubeconfig [default: $KUBECONFIG, else ~/.kube/config].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The context to register [default: the current context].
        #[arg(long)]
        context: Option<String>,
        #[arg(short = 'l', long)]
        location: Option<String>,
        /// An ARM tag, NAME=VALUE (repeatable): fan-out runs select clusters by them.
        #[arg(long = "tag", value_name = "NAME=VALUE")]
        tags: Vec<String>,
        /// Hold commands until an approver says yes: always, freeFormOnly (saved commands run at
        /// once) or off.
        #[arg(long, value_name = "MODE")]
        approval: Option<String>,
        /// With --approval: how many principals other than the requester must approve (1-3).
        #[arg(long, requires = "approval")]
        approvers: Option<u8>,
        /// With --approval: how long a command waits before it ends ApprovalExpired (ISO 8601, PT1H).
        #[arg(long, requires = "approval", value_name = "DURATION")]
        approval_expires: Option<String>,
    },
    Show {
        #[arg(short = 'g', long = "resource-group")]
        group: String,
        #[arg(short = 'n', long)]
        name: String,
    },
    List {
        #[arg(short = 'g', long = "resource-group")]
        group: Option<String>,
    },
    Delete {
        #[arg(short = 'g', long = "resource-group")]
        group: String,
        #[arg(short = 'n', long)]
        name: String,
    },
}

fn resource_group_of(id: &str) -> &str {
    id.split('/').nth(4).unwrap_or_default()
}

pub async fn cluster(args: ClusterArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    match args.command {
        ClusterCommand::Create {
            group,
            name,
            kubeconfig,
            context,
            location,
            tags,
            approval,
            approvers,
            approval_expires,
        } => {
            let path = kubeconfig
                .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kube/config"));
            let document =
                std::fs::read(&path).map_err(|e| ClientError::local(format!("reading {}: {e}", path.display())))?;
            let minified = crate::kubeconfig::minify(&document, context.as_deref())
                .map_err(|e| ClientError::local(format!("{}: {e}", path.display())))?;
            let body = ClusterRegistration {
                location,
                tags: if tags.is_empty() { None } else { Some(super::fanout::tag_pairs(&tags)?) },
                properties: RegistrationProperties {
                    kubeconfig: crate::context::encode(&minified),
                    command_approval: approval.map(|mode| CommandApproval {
                        mode,
                        approvers,
                        expires_after: approval_expires,
                    }),
                },
            };
            let body = serde_json::to_value(body).map_err(ClientError::local)?;
            let created = api
                .call(Method::PUT, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), Some(body))
                .await?;
            print(args.output, &created.body, |c: ManagedClusterView| {
                format!("registered {} (server {})", c.name, c.properties.fqdn.as_deref().unwrap_or("?"))
            })?;
        }
        ClusterCommand::Show { group, name } => {
            let shown =
                api.call(Method::GET, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), None).await?;
            print(args.output, &shown.body, |c: Value| serde_json::to_string_pretty(&c).unwrap_or_default())?;
        }
        ClusterCommand::List { group } => {
            let mut path = match &group {
                Some(group) => {
                    format!("{}/providers/Microsoft.ContainerService/managedClusters", api.group_path(group))
                }
                None => {
                    format!("/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters", api.subscription)
                }
            };
            path = Api::with_version(&path, API_VERSION);
            let mut all: Vec<Value> = Vec::new();
            let mut next = Some(path);
            while let Some(page) = next {
                let listed: ListResult<Value> = api.call(Method::GET, &page, None).await?.parse()?;
                all.extend(listed.value);
                next = listed.next_link;
            }
            let list = json!({"value": all});
            print(args.output, &list, |l: ListResult<ManagedClusterView>| {
                lines(l, |c| {
                    let fqdn = c.properties.fqdn.as_deref().unwrap_or("-");
                    format!("{}\t{}\t{fqdn}", c.name, resource_group_of(&c.id))
                })
            })?;
        }
        ClusterCommand::Delete { group, name } => {
            api.call(Method::DELETE, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), None).await?;
            print(args.output, &json!({"deleted": name}), |_: Value| format!("deleted {name}"))?;
        }
    }
    Ok(0)
}
