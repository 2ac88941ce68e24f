//! Saved commands: a script with typed parameters that an organisation allows people to run
//! without letting them run anything else. Parameters reach the script only as environment
//! variables (never spliced into its text); secret ones are never stored or shown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

/// The most a parameter value may hold, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 4096;
/// A string parameter's default `maxLength`.
const DEFAULT_MAX_LENGTH: usize = 1024;
/// The longest timeout a saved command or a request may ask for.
pub(crate) const MAX_TIMEOUT_SECONDS: u64 = 86_400;
/// Parameters one saved command may declare: every one is checked (and its pattern compiled)
/// for each run, so the work a hostile declaration can make is bounded.
pub(crate) const MAX_PARAMETERS: usize = 64;
/// The longest `pattern` a parameter may have, in bytes.
pub(crate) const MAX_PATTERN_BYTES: usize = 512;
/// What one compiled pattern may take (its program, and its lazy DFA's cache): `\w{20}` with
/// Unicode classes would otherwise compile to megabytes.
const MAX_PATTERN_PROGRAM_BYTES: usize = 256 * 1024;

/// A refusal that names the offending property (`properties.parameters.ns.pattern`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct Invalid {
    pub property: String,
    pub message: String,
}

fn invalid(property: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { property: property.into(), message: message.into() }
}

/// What values a parameter takes.
#[derive(Debug, Clone)]
pub enum ParameterType {
    /// Text, whole of which must match `pattern` when one is given.
    String { pattern: Option<regex::Regex>, max_length: usize },
    /// One of these values.
    Enum { values: Vec<String> },
    /// A whole number within the bounds.
    Integer { minimum: Option<i64>, maximum: Option<i64> },
    /// Text that is never stored, logged or shown.
    Secret,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub kind: ParameterType,
    pub default: Option<String>,
}

/// A saved command as checked at PUT.
#[derive(Debug, Clone)]
pub struct SavedCommand {
    pub script: String,
    pub parameters: BTreeMap<String, Parameter>,
    pub timeout: Option<Duration>,
    /// The attached files (base64 zip), as `runCommand`'s `context`.
    pub context: Option<String>,
    /// The identity it acts as in the cluster (least privilege), if not the registered one.
    pub run_as: Option<crate::run_as::RunAs>,
}

/// Parameter values bound for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    /// Shown in the history and stored with the command.
    pub plain: Vec<(String, String)>,
    /// Kept only in the accepting server's memory until the command runs.
    pub secret: Vec<(String, String)>,
}

/// Saved commands compiled once per stored text, so a run does not compile its patterns again,
/// and compiled on the blocking pool, at most [`COMPILERS`] at a time: a hostile declaration
/// costs its bounded compile once, never the async threads (`/healthz` stays quick).
pub struct Compiled {
    known: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<SavedCommand>>>,
    compilers: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Compilations running at once.
const COMPILERS: usize = 2;
/// Compiled saved commands kept; past it an arbitrary half is forgotten (recompiled when used).
const KEPT: usize = 512;

impl Default for Compiled {
    fn default() -> Self {
        Compiled { known: Default::default(), compilers: std::sync::Arc::new(tokio::sync::Semaphore::new(COMPILERS)) }
    }
}

impl Compiled {
    /// The saved command of `properties`, compiled now or earlier.
    pub async fn get(&self, properties: &Map<String, Value>) -> Result<std::sync::Arc<SavedCommand>, Invalid> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(serde_json::to_vec(properties).unwrap_or_default()).into();
        if let Some(known) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(known.clone());
        }
        let permit = self.compilers.clone().acquire_owned().await.map_err(|_| busy())?;
        let properties = properties.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            SavedCommand::parse(&properties)
        })
        .await
        .map_err(|_| busy())??;
        let compiled = std::sync::Arc::new(compiled);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KEPT {
            let forget: Vec<[u8; 32]> = known.keys().take(KEPT / 2).copied().collect();
            forget.iter().for_each(|k| {
                known.remove(k);
            });
        }
        known.insert(key, compiled.clone());
        Ok(compiled)
    }
}

fn busy() -> Invalid {
    invalid("properties", "The saved command could not be compiled (the server is stopping).")
}

impl SavedCommand {
    /// Reads `properties` of a PUT body (or of a stored document).
    pub fn parse(properties: &Map<String, Value>) -> Result<Self, Invalid> {
        let script =
            properties.get("script").and_then(Value::as_str).filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                invalid("properties.script", "'properties.script' is required: the shell line to run.")
            })?;
        if let Some(description) = properties.get("description").filter(|d| !d.is_null() && !d.is_string()) {
            return Err(invalid(
                "properties.description",
                format!("'properties.description' must be a string, not {description}."),
            ));
        }
        let mut parameters = BTreeMap::new();
        match properties.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(declared)) => {
                if declared.len() > MAX_PARAMETERS {
                    return Err(invalid(
                        "properties.parameters",
                        format!(
                            "A saved command declares at most {MAX_PARAMETERS} parameters; this one declares {}.",
                            declared.len()
                        ),
                    ));
                }
                for (name, spec) in declared {
                    parameters.insert(name.clone(), Parameter::parse(name, spec)?);
                }
            }
            Some(_) => {
                return Err(invalid(
                    "properties.parameters",
                    "'properties.parameters' must be an object of parameter declarations.",
                ));
            }
        }
        let timeout = match properties.get("timeoutInSeconds") {
            None | Some(Value::Null) => None,
            Some(value) => Some(timeout_seconds(value).ok_or_else(|| {
                invalid(
                    "properties.timeoutInSeconds",
                    format!("'properties.timeoutInSeconds' must be a whole number from 1 to {MAX_TIMEOUT_SECONDS}."),
                )
            })?),
        };
        let context = match properties.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                return Err(invalid(
                    "properties.context",
                    "'properties.context' must be a base64 zip, as runCommand takes it.",
                ));
            }
        };
        let run_as = match properties.get(crate::run_as::PROPERTY) {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                crate::run_as::RunAs::parse(value)
                    .map_err(|why| invalid("properties.runAs", format!("'properties.runAs' {why}.")))?,
            ),
        };
        Ok(SavedCommand { script: script.to_string(), parameters, timeout, context, run_as })
    }

    /// Checks values against the declarations; every refusal names `parameters.<name>`.
    pub fn bind(&self, values: Option<&Value>) -> Result<Bound, Invalid> {
        let given = match values {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(invalid("parameters", "'parameters' must be an object of parameter values.")),
        };
        if let Some(unknown) = given.keys().find(|k| !self.parameters.contains_key(*k)) {
            let known: Vec<&str> = self.parameters.keys().map(String::as_str).collect();
            return Err(invalid(
                format!("parameters.{unknown}"),
                format!(
                    "The saved command has no parameter '{unknown}' (it has: {}).",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            ));
        }
        let mut bound = Bound::default();
        for (name, parameter) in &self.parameters {
            let value = match (given.get(name), &parameter.default) {
                (Some(value), _) => parameter.check(name, value)?,
                (None, Some(default)) => default.clone(),
                (None, None) => {
                    return Err(invalid(format!("parameters.{name}"), format!("The parameter '{name}' is required.")));
                }
            };
            let slot =
                if matches!(parameter.kind, ParameterType::Secret) { &mut bound.secret } else { &mut bound.plain };
            slot.push((name.clone(), value));
        }
        Ok(bound)
    }
}

/// `1..=MAX_TIMEOUT_SECONDS` as a JSON number.
pub(crate) fn timeout_seconds(value: &Value) -> Option<Duration> {
    value.as_u64().filter(|s| (1..=MAX_TIMEOUT_SECONDS).contains(s)).map(Duration::from_secs)
}

/// Parameter names are environment variable names that cannot collide with the ones the
/// executor sets (`PATH`, `HOME`, `KUBECONFIG`, … are upper case).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Parameter {
    fn parse(name: &str, spec: &Value) -> Result<Self, Invalid> {
        let at =
            |field: &str| format!("properties.parameters.{name}{}{field}", if field.is_empty() { "" } else { "." });
        if !valid_name(name) {
            return Err(invalid(
                at(""),
                format!(
                    "The parameter name '{name}' must be 1-63 lower-case letters, digits or '_', starting with a letter: it becomes an environment variable of that name."
                ),
            ));
        }
        let spec = spec
            .as_object()
            .ok_or_else(|| invalid(at(""), format!("The declaration of '{name}' must be an object with a 'type'.")))?;
        let kind = match spec.get("type").and_then(Value::as_str) {
            Some("string") => {
                let pattern = match spec.get("pattern") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(p)) if p.len() > MAX_PATTERN_BYTES => {
                        return Err(invalid(
                            at("pattern"),
                            format!(
                                "The pattern of '{name}' is {} bytes long; at most {MAX_PATTERN_BYTES} are allowed.",
                                p.len()
                            ),
                        ));
                    }
                    Some(Value::String(p)) => Some(
                        regex::RegexBuilder::new(&format!("^(?:{p})$"))
                            .size_limit(MAX_PATTERN_PROGRAM_BYTES)
                            .dfa_size_limit(MAX_PATTERN_PROGRAM_BYTES)
                            .build()
                            .map_err(|e| {
                                invalid(
                                    at("pattern"),
                                    format!("The pattern of '{name}' is not a valid regular expression: {e}"),
                                )
                            })?,
                    ),
                    Some(_) => return Err(invalid(at("pattern"), "'pattern' must be a regular expression string.")),
                };
                let max_length = match spec.get("maxLength") {
                    None | Some(Value::Null) => DEFAULT_MAX_LENGTH,
                    Some(v) => {
                        v.as_u64().map(|n| n as usize).filter(|n| (1..=MAX_VALUE_BYTES).contains(n)).ok_or_else(
                            || {
                                invalid(
                                    at("maxLength"),
                                    format!("'maxLength' must be a whole number from 1 to {MAX_VALUE_BYTES}."),
                                )
                            },
                        )?
                    }
                };
                ParameterType::String { pattern, max_length }
            }
            Some("enum") => {
                let values: Option<Vec<String>> = spec
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                    .unwrap_or(None);
                let values = values.filter(|v| !v.is_empty()).ok_or_else(|| {
                    invalid(at("values"), format!("The enum '{name}' needs 'values': a non-empty array of strings."))
                })?;
                ParameterType::Enum { values }
            }
            Some("integer") => {
                let bound = |field: &'static str| match spec.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_i64()
                        .map(Some)
                        .ok_or_else(|| invalid(at(field), format!("'{field}' must be a whole number."))),
                };
                ParameterType::Integer { minimum: bound("minimum")?, maximum: bound("maximum")? }
            }
            Some("secret") => ParameterType::Secret,
            other => {
                return Err(invalid(
                    at("type"),
                    format!(
                        "The type of '{name}' must be string, enum, integer or secret (got {}).",
                        other.unwrap_or("nothing")
                    ),
                ));
            }
        };
        let mut parameter = Parameter { kind, default: None };
        match spec.get("default") {
            None | Some(Value::Null) => {}
            Some(_) if matches!(parameter.kind, ParameterType::Secret) => {
                return Err(invalid(at("default"), "A secret parameter cannot have a default: it would be stored."));
            }
            Some(default) => {
                parameter.default = Some(parameter.check(name, default).map_err(|e| invalid(at("default"), e.message))?)
            }
        }
        Ok(parameter)
    }

    /// The value as the environment variable will hold it, or why it is refused.
    fn check(&self, name: &str, value: &Value) -> Result<String, Invalid> {
        let property = format!("parameters.{name}");
        let text = match (&self.kind, value) {
            (ParameterType::Integer { .. }, Value::Number(n)) => n.to_string(),
            (_, Value::String(s)) => s.clone(),
            _ => return Err(invalid(property, format!("The parameter '{name}' must be {}.", self.expects()))),
        };
        if text.len() > MAX_VALUE_BYTES || text.contains('\0') {
            return Err(invalid(
                property,
                format!("The parameter '{name}' must be at most {MAX_VALUE_BYTES} bytes, without NUL characters."),
            ));
        }
        match &self.kind {
            ParameterType::String { pattern, max_length } => {
                if text.chars().count() > *max_length {
                    return Err(invalid(
                        property,
                        format!("The parameter '{name}' is longer than its maxLength ({max_length})."),
                    ));
                }
                if let Some(pattern) = pattern
                    && !pattern.is_match(&text)
                {
                    let shown = pattern.as_str().trim_start_matches("^(?:").trim_end_matches(")$");
                    return Err(invalid(
                        property,
                        format!("The parameter '{name}' does not match its pattern {shown}."),
                    ));
                }
            }
            ParameterType::Enum { values } if !values.contains(&text) => {
                return Err(invalid(
                    property,
                    format!("The parameter '{name}' must be one of: {}.", values.join(", ")),
                ));
            }
            ParameterType::Integer { minimum, maximum } => {
                let number: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| invalid(&property, format!("The parameter '{name}' must be a whole number.")))?;
                if minimum.is_some_and(|m| number < m) || maximum.is_some_and(|m| number > m) {
                    return Err(invalid(
                        property,
                        format!(
                            "The parameter '{name}' must be between {} and {}.",
                            minimum.map_or("-∞".into(), |m| m.to_string()),
                            maximum.map_or("∞".into(), |m| m.to_string())
                        ),
                    ));
                }
                return Ok(number.to_string());
            }
            _ => {}
        }
        Ok(text)
    }

    fn expects(&self) -> &'static str {
        match self.kind {
            ParameterType::Integer { .. } => "a whole number",
            _ => "a string",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn saved(properties: Value) -> Result<SavedCommand, Invalid> {
        SavedCommand::parse(properties.as_object().unwrap())
    }

    fn example() -> SavedCommand {
        saved(json!({
            "script": "kubectl get pods -n \"$ns\"",
            "parameters": {
                "ns": {"type": "string", "pattern": "[a-z0-9-]{1,63}"},
                "level": {"type": "enum", "values": ["info", "debug"], "default": "info"},
                "lines": {"type": "integer", "minimum": 1, "maximum": 1000},
                "token": {"type": "secret"}
            },
            "timeoutInSeconds": 60
        }))
        .unwrap()
    }

    #[test]
    fn values_are_bound_by_type_and_secrets_kept_apart() {
        let bound = example().bind(Some(&json!({"ns": "kube-system", "lines": "20", "token": "s3cr3t"}))).unwrap();
        assert_eq!(
            bound.plain,
            vec![("level".into(), "info".into()), ("lines".into(), "20".into()), ("ns".into(), "kube-system".into())]
        );
        assert_eq!(bound.secret, vec![("token".into(), "s3cr3t".into())]);
        assert_eq!(example().timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter() {
        let refuse = |values: Value| example().bind(Some(&values)).unwrap_err().property;
        let base = json!({"ns": "a", "lines": 1, "token": "t"});
        let with = |key: &str, value: Value| {
            let mut v = base.clone();
            v[key] = value;
            v
        };
        assert_eq!(refuse(with("ns", json!("x; rm -rf /"))), "parameters.ns");
        assert_eq!(refuse(with("ns", json!("prefix-ok-but-$(id)"))), "parameters.ns", "the whole value must match");
        assert_eq!(refuse(with("level", json!("trace"))), "parameters.level");
        assert_eq!(refuse(with("lines", json!(0))), "parameters.lines");
        assert_eq!(refuse(with("lines", json!("1; id"))), "parameters.lines");
        assert_eq!(refuse(with("extra", json!("x"))), "parameters.extra");
        assert_eq!(refuse(json!({"ns": "a", "lines": 1})), "parameters.token");
        assert_eq!(refuse(with("token", json!(5))), "parameters.token");
    }

    #[test]
    fn declarations_are_checked_naming_the_field() {
        let field = |properties: Value| saved(properties).unwrap_err().property;
        assert_eq!(field(json!({"parameters": {}})), "properties.script");
        assert_eq!(field(json!({"script": "x", "parameters": {"NS": {"type": "string"}}})), "properties.parameters.NS");
        assert_eq!(
            field(json!({"script": "x", "parameters": {"ns": {"type": "string", "pattern": "("}}})),
            "properties.parameters.ns.pattern"
        );
        assert_eq!(
            field(json!({"script": "x", "parameters": {"ns": {"type": "float"}}})),
            "properties.parameters.ns.type"
        );
        assert_eq!(
            field(json!({"script": "x", "parameters": {"ns": {"type": "enum", "values": []}}})),
            "properties.parameters.ns.values"
        );
        assert_eq!(
            field(json!({"script": "x", "parameters": {"ns": {"type": "secret", "default": "s"}}})),
            "properties.parameters.ns.default"
        );
        assert_eq!(
            field(json!({"script": "x", "parameters": {"ns": {"type": "enum", "values": ["a"], "default": "b"}}})),
            "properties.parameters.ns.default"
        );
        assert_eq!(field(json!({"script": "x", "timeoutInSeconds": 0})), "properties.timeoutInSeconds");
    }
}
