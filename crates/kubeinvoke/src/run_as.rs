//! Least-privilege saved commands: `runAs` names the identity a saved command acts as in its
//! cluster, so the cluster's own RBAC decides what it may do. The command never holds the
//! registered credential: for a user, the server has the cluster sign a short-lived client
//! certificate for that user and groups (`executor/kubernetes/run_as.rs`) and hands the command a
//! kubeconfig with only that; for a service account (the Pod executor), the command Pod runs as it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The property of a saved command.
pub(crate) const PROPERTY: &str = "runAs";
const MAX_NAME: usize = 253;
const MAX_GROUPS: usize = 16;

/// Who a saved command runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunAs {
    /// A Kubernetes user and its groups, as a client certificate the cluster signs.
    User { user: String, groups: Vec<String> },
    /// A service account of the commands' namespace (Pod executor only).
    ServiceAccount { service_account: String },
}

impl RunAs {
    /// `{"user": "...", "groups": [...]}` or `{"serviceAccount": "..."}`; an error names what is wrong.
    pub(crate) fn parse(value: &Value) -> Result<Self, String> {
        let Some(fields) = value.as_object() else {
            return Err(format!(
                "must be {{\"user\": \"…\", \"groups\": […]}} or {{\"serviceAccount\": \"…\"}}, not {value}"
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| !["user", "groups", "serviceAccount"].contains(&k.as_str())) {
            return Err(format!("has an unknown property '{unknown}' (known: user, groups, serviceAccount)"));
        }
        match (fields.get("user"), fields.get("serviceAccount")) {
            (Some(user), None) => {
                let user = name(user, "user")?;
                if user.starts_with("system:") {
                    return Err(format!("'user' may not be a system: identity ('{user}')"));
                }
                let groups = match fields.get("groups") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(groups)) if groups.len() <= MAX_GROUPS => {
                        groups.iter().map(|g| name(g, "groups[]")).collect::<Result<Vec<_>, _>>()?
                    }
                    Some(other) => {
                        return Err(format!("'groups' must be a list of at most {MAX_GROUPS} names, not {other}"));
                    }
                };
                if let Some(group) = groups.iter().find(|g| g.starts_with("system:")) {
                    return Err(format!("'groups' may not name a system: group ('{group}')"));
                }
                Ok(RunAs::User { user, groups })
            }
            (None, Some(account)) => {
                if fields.contains_key("groups") {
                    return Err("'groups' goes with 'user', not with 'serviceAccount'".into());
                }
                let account = name(account, "serviceAccount")?;
                let label = account.len() <= 63
                    && account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !account.starts_with('-')
                    && !account.ends_with('-');
                if !label {
                    return Err(format!(
                        "'serviceAccount' must be a DNS label (lowercase letters, digits and '-'), not '{account}'"
                    ));
                }
                Ok(RunAs::ServiceAccount { service_account: account })
            }
            _ => Err("name exactly one of 'user' or 'serviceAccount'".into()),
        }
    }

    /// As the history, the activity log and the log lines name it.
    pub fn describe(&self) -> String {
        match self {
            RunAs::User { user, groups } if groups.is_empty() => format!("user {user}"),
            RunAs::User { user, groups } => format!("user {user} (groups {})", groups.join(", ")),
            RunAs::ServiceAccount { service_account } => format!("serviceAccount {service_account}"),
        }
    }
}

/// A name of an identity: text of 1 to 253 characters without control characters.
fn name(value: &Value, field: &str) -> Result<String, String> {
    match value.as_str() {
        Some(text) if !text.is_empty() && text.len() <= MAX_NAME && !text.chars().any(char::is_control) => {
            Ok(text.to_string())
        }
        _ => Err(format!("'{field}' must be a name of 1 to {MAX_NAME} characters, not {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_user_with_groups_or_a_service_account_is_read() {
        assert_eq!(
            RunAs::parse(&json!({"user": "jane", "groups": ["readers", "ops"]})).unwrap(),
            RunAs::User { user: "jane".into(), groups: vec!["readers".into(), "ops".into()] }
        );
        let account = RunAs::parse(&json!({"serviceAccount": "deployer"})).unwrap();
        assert_eq!(account.describe(), "serviceAccount deployer");
        let round = serde_json::to_string(&account).unwrap();
        assert_eq!(serde_json::from_str::<RunAs>(&round).unwrap(), account);
    }

    #[test]
    fn hostile_or_ambiguous_identities_are_refused_naming_the_field() {
        for (bad, names) in [
            (json!("jane"), "must be"),
            (json!({}), "exactly one"),
            (json!({"user": "a", "serviceAccount": "b"}), "exactly one"),
            (json!({"user": ""}), "'user'"),
            (json!({"user": "a\nb"}), "'user'"),
            (json!({"user": "system:admin"}), "system:"),
            (json!({"user": "a", "groups": ["system:masters"]}), "system:"),
            (json!({"user": "a", "groups": "ops"}), "'groups'"),
            (json!({"serviceAccount": "Has Spaces"}), "DNS label"),
            (json!({"serviceAccount": "../x"}), "DNS label"),
            (json!({"serviceAccount": "a", "groups": []}), "'groups'"),
            (json!({"user": "a", "as": "b"}), "unknown"),
        ] {
            let why = RunAs::parse(&bad).unwrap_err();
            assert!(why.contains(names), "{bad}: {why}");
        }
    }
}
