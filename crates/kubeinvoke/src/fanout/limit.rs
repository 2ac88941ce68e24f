//! `maxConcurrency` and `maxErrors`: a count (`16`) or a share of the targets (`"25%"`), as AWS
//! Systems Manager Run Command takes them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(usize),
    /// Percent of the runnable targets, 0–100; rounded down, but never below 1 for concurrency.
    Percent(u8),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{field}' must be a whole number{} or a percentage like \"25%\" (0-100); got {given}", if *.at_least_one { " of at least 1" } else { "" })]
pub struct LimitError {
    pub field: &'static str,
    pub given: String,
    pub at_least_one: bool,
}

impl Limit {
    /// Reads the JSON value of `field`: a non-negative integer, or a string `N` or `P%`.
    pub fn from_json(field: &'static str, value: &serde_json::Value, at_least_one: bool) -> Result<Self, LimitError> {
        let error = || LimitError { field, given: value.to_string(), at_least_one };
        let limit = match value {
            serde_json::Value::Number(n) => {
                Limit::Count(n.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(error)?)
            }
            serde_json::Value::String(text) => Self::parse(text.trim()).ok_or_else(error)?,
            _ => return Err(error()),
        };
        let zero = matches!(limit, Limit::Count(0) | Limit::Percent(0));
        if at_least_one && zero { Err(error()) } else { Ok(limit) }
    }

    /// `N` or `P%` (what the store keeps and the CLI takes).
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_suffix('%') {
            Some(percent) => percent.parse::<u8>().ok().filter(|p| *p <= 100).map(Limit::Percent),
            None => text.parse::<usize>().ok().map(Limit::Count),
        }
    }

    /// The limit for `targets` targets.
    pub fn of(self, targets: usize) -> usize {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => targets * usize::from(p) / 100,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_and_percentages_parse_and_apply() {
        assert_eq!(Limit::from_json("m", &json!(16), true), Ok(Limit::Count(16)));
        assert_eq!(Limit::from_json("m", &json!("25%"), true), Ok(Limit::Percent(25)));
        assert_eq!(Limit::from_json("m", &json!(" 3 "), false), Ok(Limit::Count(3)));
        assert_eq!(Limit::Percent(25).of(30), 7);
        assert_eq!(Limit::Count(5).of(30), 5);
        assert_eq!(Limit::parse("0%").map(|l| l.to_string()), Some("0%".into()));
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        for bad in [json!(0), json!("0%"), json!(-1), json!("101%"), json!("many"), json!(1.5), json!(null)] {
            let error = Limit::from_json("maxConcurrency", &bad, true).unwrap_err();
            assert!(error.to_string().starts_with("'maxConcurrency' must be"), "{error}");
        }
        assert_eq!(Limit::from_json("maxErrors", &json!(0), false), Ok(Limit::Count(0)));
    }
}
