//! `kubeinvoke cluster …`, `kubeinvoke group …` and `kubeinvoke login`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{API_VERSION, Api};
use super::config::{self, Connection, SavedLogin};
use super::exit::ClientError;
use super::output::Output;

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

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Say which server, CA and principal the next command will use, and why; log in to nothing.
    #[arg(long, conflicts_with_all = ["app_id", "data_dir"])]
    pub show: bool,
    /// A local server's data directory: its CA and bootstrap admin [default: the default one's].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The service principal [default: the local server's bootstrap admin].
    #[arg(long, requires_all = ["password", "tenant"])]
    pub app_id: Option<String>,
    #[arg(long, env = "KUBEINVOKE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

fn print(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Text => println!("{}", text(value)),
    }
}

fn names(list: &Value, columns: impl Fn(&Value) -> String) -> String {
    list["value"].as_array().map(|items| items.iter().map(columns).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

fn resource_group_of(id: &str) -> &str {
    id.split('/').nth(4).unwrap_or_default()
}

pub async fn cluster(args: ClusterArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    match args.command {
        ClusterCommand::Create { group, name, kubeconfig, context, location, tags } => {
            let path = kubeconfig
                .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kube/config"));
            let document =
                std::fs::read(&path).map_err(|e| ClientError::local(format!("reading {}: {e}", path.display())))?;
            let minified = crate::kubeconfig::minify(&document, context.as_deref())
                .map_err(|e| ClientError::local(format!("{}: {e}", path.display())))?;
            let mut body = json!({"properties": {"kubeconfig": crate::context::encode(&minified)}});
            if let Some(location) = location {
                body["location"] = json!(location);
            }
            if !tags.is_empty() {
                body["tags"] = super::fanout::tag_pairs(&tags)?;
            }
            let created = api
                .call(Method::PUT, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), Some(body))
                .await?;
            print(args.output, &created.body, |c| {
                format!(
                    "registered {} (server {})",
                    c["name"].as_str().unwrap_or_default(),
                    c["properties"]["fqdn"].as_str().unwrap_or("?")
                )
            });
        }
        ClusterCommand::Show { group, name } => {
            let shown =
                api.call(Method::GET, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), None).await?;
            print(args.output, &shown.body, |c| serde_json::to_string_pretty(c).unwrap_or_default());
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
            let mut all = Vec::new();
            let mut next = Some(path);
            while let Some(page) = next {
                let answer = api.call(Method::GET, &page, None).await?;
                all.extend(answer.body["value"].as_array().cloned().unwrap_or_default());
                next = answer.body["nextLink"].as_str().map(str::to_string);
            }
            let list = json!({"value": all});
            print(args.output, &list, |l| {
                names(l, |c| {
                    format!(
                        "{}\t{}\t{}",
                        c["name"].as_str().unwrap_or_default(),
                        resource_group_of(c["id"].as_str().unwrap_or_default()),
                        c["properties"]["fqdn"].as_str().unwrap_or("-")
                    )
                })
            });
        }
        ClusterCommand::Delete { group, name } => {
            api.call(Method::DELETE, &Api::with_version(&api.cluster_path(&group, &name), API_VERSION), None).await?;
            print(args.output, &json!({"deleted": name}), |_| format!("deleted {name}"));
        }
    }
    Ok(0)
}

pub async fn group(args: GroupArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    match args.command {
        GroupCommand::Create { name, location } => {
            let created = api
                .call(Method::PUT, &Api::resources_version(&api.group_path(&name)), Some(json!({"location": location})))
                .await?;
            print(args.output, &created.body, |g| format!("created {}", g["name"].as_str().unwrap_or_default()));
        }
        GroupCommand::List => {
            let listed = api
                .call(
                    Method::GET,
                    &Api::resources_version(&format!("/subscriptions/{}/resourcegroups", api.subscription)),
                    None,
                )
                .await?;
            print(args.output, &listed.body, |l| {
                names(l, |g| {
                    format!(
                        "{}\t{}",
                        g["name"].as_str().unwrap_or_default(),
                        g["location"].as_str().unwrap_or_default()
                    )
                })
            });
        }
        GroupCommand::Delete { name } => {
            api.call(Method::DELETE, &Api::resources_version(&api.group_path(&name)), None).await?;
            print(args.output, &json!({"deleted": name}), |_| format!("deleted {name}"));
        }
    }
    Ok(0)
}

pub async fn login(args: LoginArgs) -> Result<u8, ClientError> {
    if args.show {
        return show_login(&args.connection);
    }
    let mut connection = args.connection.clone();
    if let Some(dir) = &args.data_dir {
        connection.ca = connection.ca.or_else(|| Some(dir.join("tls/ca.pem")));
    }
    // A new login names its server: `--url`, else the environment, else the default — never
    // the previous login's.
    connection.url = connection.url.or_else(|| Some(config::DEFAULT_URL.to_string()));
    let resolved = connection.resolve()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(crate::config::default_data_dir);
    let mut login = match (args.app_id, args.password, args.tenant) {
        (Some(app_id), Some(password), Some(tenant)) => {
            SavedLogin { url: resolved.url.clone(), ca: None, app_id, password, tenant }
        }
        _ => config::local_admin(&data_dir, &resolved.url).ok_or_else(|| {
            ClientError::Auth(format!(
                "give --app-id, --password and --tenant (no admin credentials in {})",
                data_dir.display()
            ))
        })?,
    };
    config::request_token(&resolved, &login).await?;
    login.ca = resolved.ca.clone().map(|ca| std::fs::canonicalize(&ca).unwrap_or(ca));
    let path = config::save_login(&login)?;
    println!("logged in to {} as {} (credentials in {}, mode 0600)", resolved.url, login.app_id, path.display());
    Ok(0)
}

/// `kubeinvoke login --show`: where the next command goes, trusting what, as whom.
fn show_login(connection: &Connection) -> Result<u8, ClientError> {
    let resolved = connection.resolve()?;
    let saved = config::saved_login()?.filter(|saved| saved.url == resolved.url);
    println!("server     {}  (from {})", resolved.url, resolved.url_from);
    match &resolved.ca {
        Some(ca) => println!("trusts     {}", ca.display()),
        None => println!("trusts     the system's certificate authorities"),
    }
    match saved {
        Some(saved) => println!("as         {} (tenant {})", saved.app_id, saved.tenant),
        None => println!("as         the local server's bootstrap admin, if this user started it (not logged in)"),
    }
    Ok(0)
}
