//! How client commands print: for people, or JSON for scripts.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub(crate) fn print(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Text => println!("{}", text(value)),
    }
}

pub(crate) fn names(list: &Value, columns: impl Fn(&Value) -> String) -> String {
    list["value"].as_array().map(|items| items.iter().map(columns).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}
