//! `kubeinvoke saved create|show|list|delete` and the `--saved NAME -p k=v` form of `invoke`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use super::api::{API_VERSION, Api};
use super::config::Connection;
use super::exit::ClientError;
use super::output::{Output, lines, print};
use crate::arm::wire::{ListResult, ParameterDeclaration, SavedCommandProperties, SavedCommandView, SavedCommandWrite};

#[derive(Debug, Args)]
pub struct SavedArgs {
    #[command(subcommand)]
    pub command: SavedCommandAction,
    /// The saved commands' resource group (default: the subscription).
    #[arg(short = 'g', long = "resource-group", global = true)]
    pub group: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum SavedCommandAction {
    /// Create or replace a saved command.
    Create {
        #[arg(short = 'n', long)]
        name: String,
        /// The shell line; parameters reach it as environment variables ("$ns").
        #[arg(long)]
        script: String,
        #[arg(long)]
        description: Option<String>,
        /// A parameter: NAME:string[:PATTERN], NAME:enum:A,B,C, NAME:integer[:MIN..MAX] or
        /// NAME:secret (repeatable).
        #[arg(long = "param", value_name = "NAME:TYPE[:SPEC]")]
        params: Vec<String>,
        /// Seconds after which its runs are stopped (lowers the server's and the cluster's limits).
        #[arg(long)]
        timeout: Option<u64>,
    },
    Show {
        #[arg(short = 'n', long)]
        name: String,
    },
    List,
    Delete {
        #[arg(short = 'n', long)]
        name: String,
    },
}

fn scope(api: &Api, group: Option<&str>) -> String {
    match group {
        Some(group) => format!("/subscriptions/{}/resourceGroups/{group}", api.subscription),
        None => format!("/subscriptions/{}", api.subscription),
    }
}

fn saved_path(api: &Api, group: Option<&str>, name: &str) -> String {
    format!("{}/providers/Microsoft.ContainerService/savedCommands/{name}", scope(api, group))
}

pub async fn saved(args: SavedArgs) -> Result<u8, ClientError> {
    let api = Api::connect(&args.connection).await?;
    let group = args.group.as_deref();
    let versioned = |path: String| Api::with_version(&path, API_VERSION);
    match args.command {
        SavedCommandAction::Create { name, script, description, params, timeout } => {
            let parameters = params.iter().map(|p| parameter(p)).collect::<Result<_, _>>()?;
            let properties = SavedCommandProperties { script, description, parameters, timeout_in_seconds: timeout };
            let body = serde_json::to_value(SavedCommandWrite { properties }).map_err(ClientError::local)?;
            let put = api.call(Method::PUT, &versioned(saved_path(&api, group, &name)), Some(body)).await?;
            print(args.output, &put.body, |v: SavedCommandView| format!("saved {}", v.id))?;
        }
        SavedCommandAction::Show { name } => {
            let got = api.call(Method::GET, &versioned(saved_path(&api, group, &name)), None).await?;
            print(args.output, &got.body, |v: Value| serde_json::to_string_pretty(&v).unwrap_or_default())?;
        }
        SavedCommandAction::List => {
            let path = format!("{}/providers/Microsoft.ContainerService/savedCommands", scope(&api, group));
            let listed = api.call(Method::GET, &versioned(path), None).await?;
            print(args.output, &listed.body, |list: ListResult<SavedCommandView>| {
                lines(list, |saved| {
                    let p = saved.properties;
                    let names: Vec<String> = p.parameters.iter().map(|(k, d)| format!("{k}:{}", d.kind)).collect();
                    format!("{}\t{}\t{}", saved.name, names.join(","), p.script)
                })
            })?;
        }
        SavedCommandAction::Delete { name } => {
            api.call(Method::DELETE, &versioned(saved_path(&api, group, &name)), None).await?;
            println!("deleted {name}");
        }
    }
    Ok(0)
}

/// `NAME:TYPE[:SPEC]` → the declaration the API takes.
fn parameter(text: &str) -> Result<(String, ParameterDeclaration), ClientError> {
    let mut parts = text.splitn(3, ':');
    let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
        return Err(ClientError::local(format!("--param takes NAME:TYPE[:SPEC], got '{text}'")));
    };
    let spec = parts.next();
    let declared = |kind: &str| ParameterDeclaration { kind: kind.to_string(), ..Default::default() };
    let declaration = match (kind, spec) {
        ("string", None) | ("secret", None) | ("integer", None) => declared(kind),
        ("string", Some(pattern)) => ParameterDeclaration { pattern: Some(pattern.to_string()), ..declared(kind) },
        ("enum", Some(values)) => {
            ParameterDeclaration { values: Some(values.split(',').map(str::to_string).collect()), ..declared(kind) }
        }
        ("integer", Some(range)) => {
            let (min, max) = range
                .split_once("..")
                .ok_or_else(|| ClientError::local(format!("an integer's range is MIN..MAX, got '{range}'")))?;
            let bound = |b: &str| if b.is_empty() { Ok(None) } else { b.parse::<i64>().map(Some) };
            let (Ok(minimum), Ok(maximum)) = (bound(min), bound(max)) else {
                return Err(ClientError::local(format!("an integer's range is MIN..MAX, got '{range}'")));
            };
            ParameterDeclaration { minimum: Some(minimum), maximum: Some(maximum), ..declared(kind) }
        }
        _ => {
            return Err(ClientError::local(format!(
                "--param '{text}': TYPE is string[:PATTERN], enum:A,B, integer[:MIN..MAX] or secret"
            )));
        }
    };
    Ok((name.to_string(), declaration))
}

/// `-p NAME=VALUE` options; `NAME=@FILE` reads the value from a file (`@-`: standard input), so a
/// secret need not appear on the command line.
pub fn parameter_values(pairs: &[String]) -> Result<Value, ClientError> {
    let mut values = Map::new();
    for pair in pairs {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| ClientError::local(format!("-p takes NAME=VALUE, got '{pair}'")))?;
        let value = match value.strip_prefix('@') {
            Some("-") => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(ClientError::local)?;
                text.trim_end_matches('\n').to_string()
            }
            Some(file) => std::fs::read_to_string(file)
                .map(|t| t.trim_end_matches('\n').to_string())
                .map_err(|e| ClientError::local(format!("reading {file}: {e}")))?,
            None => value.to_string(),
        };
        values.insert(name.to_string(), Value::String(value));
    }
    Ok(Value::Object(values))
}

/// The id of saved command `name` for a cluster of `group`: the group's, else the subscription's;
/// a full id is taken as it is.
pub async fn resolve(api: &Api, group: &str, name: &str) -> Result<String, ClientError> {
    if name.starts_with('/') {
        return Ok(name.to_string());
    }
    for candidate in [saved_path(api, Some(group), name), saved_path(api, None, name)] {
        match api.call(Method::GET, &Api::with_version(&candidate, API_VERSION), None).await {
            Ok(_) => return Ok(candidate),
            Err(ClientError::Cloud { status: 404, .. }) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(ClientError::Cloud {
        status: 404,
        code: "SavedCommandNotFound".into(),
        message: format!("No saved command '{name}' in resource group '{group}' or the subscription."),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The declaration as it goes on the wire.
    fn parameter(text: &str) -> Result<(String, Value), ClientError> {
        super::parameter(text).map(|(name, declaration)| (name, serde_json::to_value(declaration).unwrap()))
    }

    use super::*;

    #[test]
    fn parameter_declarations_read_from_the_command_line() {
        assert_eq!(
            parameter("ns:string:^[a-z]+$").unwrap(),
            ("ns".into(), json!({"type": "string", "pattern": "^[a-z]+$"}))
        );
        assert_eq!(parameter("level:enum:info,debug").unwrap().1, json!({"type": "enum", "values": ["info", "debug"]}));
        assert_eq!(parameter("n:integer:1..10").unwrap().1, json!({"type": "integer", "minimum": 1, "maximum": 10}));
        assert_eq!(parameter("n:integer:..10").unwrap().1, json!({"type": "integer", "minimum": null, "maximum": 10}));
        assert_eq!(parameter("t:secret").unwrap().1, json!({"type": "secret"}));
        assert!(parameter("t").is_err() && parameter("t:float").is_err() && parameter("n:integer:x").is_err());
    }
}
