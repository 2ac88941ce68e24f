//! `kubeinvoke login [--show]`: whom the client acts as, on which server, trusting which CA.

use std::path::PathBuf;

use clap::Args;

use super::config::{self, Connection, SavedLogin};
use super::exit::ClientError;

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
    println!("server     {}  (from {})", resolved.url, resolved.url_from);
    match &resolved.ca {
        Some(ca) => println!("trusts     {}", ca.display()),
        None => println!("trusts     the system's certificate authorities"),
    }
    match &resolved.login {
        Some(saved) => println!("as         {} (tenant {})", saved.app_id, saved.tenant),
        None => println!("as         the local server's bootstrap admin, if this user started it (not logged in)"),
    }
    Ok(0)
}
