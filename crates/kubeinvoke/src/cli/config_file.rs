//! `~/.config/kubeinvoke/config.toml`: defaults for the client's connection and, under
//! `[serve]`, for any `kubeinvoke serve` flag by its long name (flags > environment > file).

use std::path::PathBuf;

/// Makes the config file's keys available as `KUBEINVOKE_*` defaults, so the precedence is
/// flags > environment > file. Top-level keys are the client's (`url`, `ca`, `subscription`);
/// the `[serve]` table holds `kubeinvoke serve` flags by their long names.
pub fn apply_config_file(args: &[String]) -> Result<(), String> {
    let explicit = args.windows(2).find(|w| w[0] == "--config").map(|w| PathBuf::from(&w[1]));
    let path = explicit
        .clone()
        .or_else(|| std::env::var_os("KUBEINVOKE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| crate::client::config::config_dir().join("config.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let serving = args.get(1).is_some_and(|a| a == "serve");
    let mut pairs = Vec::new();
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("serve", toml::Value::Table(serve)) if serving => pairs.extend(serve.iter()),
            ("serve", _) => {}
            _ if !serving => pairs.push((key, value)),
            _ => {}
        }
    }
    let known = known_settings(serving);
    if let Some((unknown, _)) = pairs.iter().find(|(key, _)| !known.iter().any(|k| k == *key)) {
        return Err(format!("{}: unknown setting {unknown:?} (known: {})", path.display(), known.join(", ")));
    }
    for (key, value) in pairs {
        let name = format!("KUBEINVOKE_{}", key.to_ascii_uppercase().replace('-', "_"));
        let text = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
            other => scalar(other),
        };
        if std::env::var_os(&name).is_none() {
            // SAFETY: called first thing in main, before any thread exists.
            unsafe { std::env::set_var(name, text) };
        }
    }
    Ok(())
}

/// The settings a config file may name: `serve`'s long flags, or the client's connection.
fn known_settings(serving: bool) -> Vec<String> {
    use clap::CommandFactory;
    if !serving {
        return ["url", "ca", "subscription"].map(String::from).to_vec();
    }
    let cli = super::Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve exists");
    serve.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "config").map(String::from).collect()
}

/// A TOML scalar as a flag value.
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => String::new(),
    }
}
