//! How client commands print: for people, or JSON for scripts.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::api::unexpected;
use super::exit::ClientError;
use crate::arm::wire::ListResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Prints `value` as JSON, or as the text `text` makes of it read as the wire type `T`.
pub(crate) fn print<T: DeserializeOwned>(
    output: Output,
    value: &Value,
    text: impl FnOnce(T) -> String,
) -> Result<(), ClientError> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Text => println!("{}", text(T::deserialize(value).map_err(unexpected)?)),
    }
    Ok(())
}

/// One line per item of an ARM list.
pub(crate) fn lines<T>(list: ListResult<T>, line: impl Fn(T) -> String) -> String {
    list.value.into_iter().map(line).collect::<Vec<_>>().join("\n")
}
