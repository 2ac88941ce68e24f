//! ARM tags: what a resource may carry, checked before it is stored. Tags select the clusters of
//! a fan-out, so they are kept to what Azure accepts: an object of at most 50 string values,
//! names of 1–512 characters, values of at most 256, and no control characters in either (a NUL
//! cannot even be stored in PostgreSQL's text).

use serde_json::{Map, Value};

pub const MAX_TAGS: usize = 50;
pub const MAX_NAME_CHARS: usize = 512;
pub const MAX_VALUE_CHARS: usize = 256;

/// Why a `tags` value is refused; its text is the client's error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("'tags' must be a JSON object of tag names and string values.")]
    NotAnObject,
    #[error("'tags' holds {0} tags; a resource carries at most {MAX_TAGS}.")]
    TooMany(usize),
    #[error("A tag name must not be empty.")]
    EmptyName,
    #[error("The tag name '{0}…' is longer than {MAX_NAME_CHARS} characters.")]
    NameTooLong(String),
    #[error("The value of tag '{0}' must be a string.")]
    NotAString(String),
    #[error("The value of tag '{0}' is longer than {MAX_VALUE_CHARS} characters.")]
    ValueTooLong(String),
    #[error("The tag '{0}' holds a control character in its name or value.")]
    ControlCharacter(String),
}

/// Checks a resource's `tags` as sent (`null` clears them and is accepted).
pub fn check(tags: &Value) -> Result<(), TagError> {
    let tags = match tags {
        Value::Null => return Ok(()),
        Value::Object(tags) => tags,
        _ => return Err(TagError::NotAnObject),
    };
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    for (name, value) in tags {
        // Names are shown in messages with control characters escaped and cut to a readable length.
        let shown = || name.chars().take(64).flat_map(char::escape_default).collect::<String>();
        if name.is_empty() {
            return Err(TagError::EmptyName);
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(TagError::NameTooLong(shown()));
        }
        let Some(value) = value.as_str() else { return Err(TagError::NotAString(shown())) };
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(TagError::ValueTooLong(shown()));
        }
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(TagError::ControlCharacter(shown()));
        }
    }
    Ok(())
}

/// The tags of a request once checked: `None` when absent or `null`.
pub fn checked(tags: Option<Value>) -> Result<Option<Map<String, Value>>, TagError> {
    let tags = tags.unwrap_or(Value::Null);
    check(&tags)?;
    match tags {
        Value::Object(tags) => Ok(Some(tags)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_azure_accepts_pass() {
        assert_eq!(check(&json!({"env": "prod", "Team": "", "ünïcode": "wert"})), Ok(()));
        assert_eq!(check(&Value::Null), Ok(()));
        assert_eq!(check(&json!({})), Ok(()));
    }

    #[test]
    fn every_rule_refuses_what_it_names() {
        assert_eq!(check(&json!(["env"])), Err(TagError::NotAnObject));
        assert_eq!(check(&json!("env=prod")), Err(TagError::NotAnObject));
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
        assert_eq!(check(&Value::Object(many)), Err(TagError::TooMany(51)));
        assert_eq!(check(&json!({"": "v"})), Err(TagError::EmptyName));
        assert!(matches!(check(&json!({"n".repeat(513): "v"})), Err(TagError::NameTooLong(_))));
        assert_eq!(check(&json!({"n": 1})), Err(TagError::NotAString("n".into())));
        assert_eq!(check(&json!({"n": "v".repeat(257)})), Err(TagError::ValueTooLong("n".into())));
        assert_eq!(check(&json!({"n": "a\u{0}b"})), Err(TagError::ControlCharacter("n".into())));
        assert_eq!(check(&json!({"a\nb": "v"})), Err(TagError::ControlCharacter("a\\nb".into())));
    }
}
