//! Offline administration on a data directory: service principals (`kubeinvoke sp`) and the
//! az CLI setup (`kubeinvoke az-login`). These open the store directly, so they work whether or
//! not a server is running (SQLite serialises the writes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::default_data_dir;
use crate::identity::{Credentials, principals, rbac};
use crate::store::StoreLocation;
use crate::store::{RoleAssignmentRecord, Store};
use crate::time::{now_millis, rfc3339};

#[derive(Debug, Args)]
pub struct SpArgs {
    /// The server's data directory.
    #[arg(long, env = "KUBEINVOKE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's store: `sqlite` (in the data dir) or the replicas' PostgreSQL URL.
    #[arg(long, env = "KUBEINVOKE_STORE", default_value = "sqlite", global = true, hide_env_values = true)]
    pub store: crate::store::StoreLocation,
    #[command(subcommand)]
    pub command: SpCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpCommand {
    /// Create a service principal; prints its appId, password and tenant once.
    Create {
        #[arg(long)]
        name: String,
        /// A built-in role name or id to assign (Owner, Contributor, Reader, …).
        #[arg(long, requires = "scope")]
        role: Option<String>,
        /// The scope of the role: `/`, `/subscriptions/…`, a group or a cluster id.
        #[arg(long, requires = "role")]
        scope: Option<String>,
    },
    /// List service principals and their role assignments (never secrets).
    List,
    /// Delete a service principal and its role assignments.
    Delete {
        #[arg(long)]
        app_id: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    app_id: String,
    object_id: String,
    display_name: String,
    created: String,
    roles: Vec<ListedRole>,
}

#[derive(Serialize)]
struct ListedRole {
    role: String,
    scope: String,
}

/// The store and the tenant its tokens name: replicas keep the tenant in the shared store.
async fn open(data_dir: &Path, location: &StoreLocation) -> anyhow::Result<(Arc<dyn Store>, String)> {
    let instance: serde_json::Value = match location {
        StoreLocation::Sqlite => {
            serde_json::from_slice(&std::fs::read(data_dir.join("instance.json")).with_context(|| {
                format!("{} is not a kubeinvoke data directory (start the server once)", data_dir.display())
            })?)?
        }
        StoreLocation::Postgres(_) => {
            let store = crate::store::open(location, data_dir, false).await?;
            let stored = store
                .settings()
                .get_setting("instance")
                .await?
                .with_context(|| format!("no kubeinvoke server has started on {location} yet (start one first)"))?;
            let tenant = serde_json::from_slice::<serde_json::Value>(&stored)?["tenantId"]
                .as_str()
                .context("the stored instance ids have no tenantId")?
                .to_string();
            return Ok((store, tenant));
        }
    };
    let tenant = instance["tenantId"].as_str().context("instance.json has no tenantId")?.to_string();
    Ok((crate::store::open(location, data_dir, false).await?, tenant))
}

pub async fn sp(args: SpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let (store, tenant) = open(&data_dir, &args.store).await?;
    match args.command {
        SpCommand::Create { name, role, scope } => {
            let role = role
                .map(|r| rbac::resolve_role(&r).with_context(|| format!("unknown role {r:?}; built in: Owner, Contributor, Reader, Azure Kubernetes Service Cluster Admin Role, Azure Kubernetes Service Cluster User Role")))
                .transpose()?;
            let created = principals::new_principal(&name);
            store.identity().create_principal(created.record.clone()).await?;
            if let (Some(role), Some(scope)) = (role, scope) {
                store
                    .identity()
                    .put_role_assignment(RoleAssignmentRecord {
                        name: uuid::Uuid::new_v4().to_string(),
                        scope,
                        role_definition_id: role.id.into(),
                        principal_id: created.record.object_id.clone(),
                        principal_type: "ServicePrincipal".into(),
                        created_at: now_millis(),
                    })
                    .await?;
            }
            let credentials =
                Credentials { app_id: created.record.app_id, display_name: name, password: created.secret, tenant };
            println!("{}", serde_json::to_string_pretty(&credentials)?);
        }
        SpCommand::List => {
            let assignments = store.identity().list_role_assignments().await?;
            let listed: Vec<Listed> = store
                .identity()
                .list_principals()
                .await?
                .into_iter()
                .map(|p| Listed {
                    roles: assignments
                        .iter()
                        .filter(|a| a.principal_id == p.object_id)
                        .map(|a| ListedRole {
                            role: rbac::role_by_id(&a.role_definition_id)
                                .map_or(a.role_definition_id.clone(), |r| r.name.into()),
                            scope: a.scope.clone(),
                        })
                        .collect(),
                    app_id: p.app_id,
                    object_id: p.object_id,
                    display_name: p.display_name,
                    created: rfc3339(p.created_at),
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&listed)?);
        }
        SpCommand::Delete { app_id } => {
            anyhow::ensure!(
                store.identity().delete_principal(&app_id).await?,
                "no service principal with appId {app_id}"
            );
            println!("deleted {app_id}");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AzLoginArgs {
    /// The server's base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// The server's data directory (for the CA and the bootstrap admin's credentials).
    #[arg(long, env = "KUBEINVOKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the az CLI keeps its state for this server.
    #[arg(long, default_value = "~/.azure-kubeinvoke")]
    pub azure_config_dir: String,
    /// Write the script to this file (mode 0600: it holds a secret) instead of printing it.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A shell script that points an az CLI at this server and logs in as the bootstrap admin.
pub fn az_login(args: AzLoginArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let credentials: crate::identity::Credentials = serde_json::from_slice(
        &std::fs::read(data_dir.join(crate::identity::BOOTSTRAP_FILE))
            .context("the bootstrap admin's credentials are not in the data directory")?,
    )?;
    let url = args.url.trim_end_matches('/');
    let ca = data_dir.join("tls/ca.pem");
    let script = format!(
        "# Point an az CLI at kubeinvoke ({url}) and log in as the bootstrap admin.\n\
         export AZURE_CONFIG_DIR={config_dir}\n\
         export REQUESTS_CA_BUNDLE={ca}\n\
         az config set core.instance_discovery=false --only-show-errors\n\
         az cloud register -n kubeinvoke --endpoint-resource-manager {url}/ --endpoint-active-directory {url} \\\n\
         \x20   --endpoint-active-directory-resource-id https://management.core.windows.net/ --only-show-errors\n\
         az cloud set -n kubeinvoke\n\
         az login --service-principal --username {app_id} --password={password} --tenant {tenant}\n",
        config_dir = args.azure_config_dir,
        ca = ca.display(),
        app_id = credentials.app_id,
        password = credentials.password,
        tenant = credentials.tenant,
    );
    match args.output {
        Some(path) => {
            crate::files::write_private(&path, script.as_bytes())?;
            eprintln!("wrote {} (mode 0600); run: source {}", path.display(), path.display());
        }
        None => print!("{script}"),
    }
    Ok(())
}
