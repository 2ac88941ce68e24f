//! A cluster's own settings, read from its ARM document in this one place: on PUT, where what
//! cannot be used is refused naming the property, and when one of its commands is submitted or
//! claimed, where a stored value that cannot be used fails the command naming it.

use serde_json::{Map, Value};

use crate::approval::{self, ApprovalPolicy};
use crate::executor::{ExecutorKind, LimitOverrides};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `properties.commandExecutor`: where its commands run (else the server's choice).
    pub executor: Option<ExecutorKind>,
    /// `properties.commandLimits`: limits lower than the server's.
    pub limits: LimitOverrides,
    /// `properties.apiServerAccessProfile.disableRunCommand` (AKS's own switch).
    pub run_command_disabled: bool,
    /// `properties.aadProfile.managed`: commands act as their caller, with a `clusterToken`.
    pub aad_managed: bool,
    /// `properties.commandApproval`: which commands wait for approvers (none with `mode: "off"`).
    pub approval: Option<ApprovalPolicy>,
}

/// A setting that cannot be used: the property (`properties.…`) and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSetting {
    pub property: &'static str,
    pub message: String,
}

/// Why a cluster's own settings refuse a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `disableRunCommand` is set and the command is a free-form shell line.
    RunCommandDisabled,
    /// The cluster is AAD-managed and no `clusterToken` came with the command.
    ClusterTokenRequired,
}

impl ClusterSettings {
    /// Whether a command may run here: `free_form` is a shell line of the caller's (a saved
    /// command is not; `disableRunCommand` is about free-form commands only), `has_token` whether
    /// a `clusterToken` came with it.
    pub fn admits(&self, free_form: bool, has_token: bool) -> Result<(), Refusal> {
        if free_form && self.run_command_disabled {
            return Err(Refusal::RunCommandDisabled);
        }
        if self.aad_managed && !has_token {
            return Err(Refusal::ClusterTokenRequired);
        }
        Ok(())
    }

    /// The settings of a cluster document (`{"location", "properties": {...}}`).
    pub fn from_document(document: &Map<String, Value>) -> Result<Self, InvalidSetting> {
        match document.get("properties") {
            Some(Value::Object(properties)) => Self::from_properties(properties),
            _ => Ok(Self::default()),
        }
    }

    pub fn from_properties(properties: &Map<String, Value>) -> Result<Self, InvalidSetting> {
        let flag = |path: &[&str]| {
            let found = path[1..].iter().try_fold(properties.get(path[0]), |v, key| Some(v?.get(*key)));
            found.flatten().and_then(Value::as_bool) == Some(true)
        };
        let limits = match properties.get(LimitOverrides::PROPERTY) {
            None | Some(Value::Null) => LimitOverrides::default(),
            Some(value) => LimitOverrides::parse(value).map_err(|why| {
                let property = "properties.commandLimits";
                InvalidSetting { property, message: format!("'{property}' is invalid: {why}") }
            })?,
        };
        let executor = match properties.get(ExecutorKind::PROPERTY) {
            None | Some(Value::Null) => None,
            Some(choice) => Some(choice.as_str().and_then(ExecutorKind::parse).ok_or_else(|| {
                let property = "properties.commandExecutor";
                InvalidSetting {
                    property,
                    message: format!("'{property}' must be \"local\" or \"kubernetes\", not {choice}."),
                }
            })?),
        };
        let approval = match properties.get(approval::PROPERTY) {
            None | Some(Value::Null) => None,
            Some(value) => ApprovalPolicy::parse(value).map_err(|why| {
                let property = "properties.commandApproval";
                InvalidSetting { property, message: format!("'{property}' {why}.") }
            })?,
        };
        Ok(ClusterSettings {
            approval,
            executor,
            limits,
            run_command_disabled: flag(&["apiServerAccessProfile", "disableRunCommand"]),
            aad_managed: flag(&["aadProfile", "managed"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(properties: Value) -> Result<ClusterSettings, InvalidSetting> {
        ClusterSettings::from_document(json!({"properties": properties}).as_object().unwrap())
    }

    #[test]
    fn each_setting_is_read_from_its_property() {
        let read = settings(json!({
            "commandExecutor": "Kubernetes",
            "commandLimits": {"timeoutSeconds": 5},
            "apiServerAccessProfile": {"disableRunCommand": true},
            "aadProfile": {"managed": true},
            "commandApproval": {"mode": "freeFormOnly", "approvers": 2}
        }))
        .unwrap();
        assert_eq!(read.executor, Some(ExecutorKind::Kubernetes));
        assert_eq!(read.limits.timeout_seconds, Some(5));
        assert!(read.run_command_disabled && read.aad_managed);
        assert_eq!(read.approval.map(|a| a.approvers), Some(2));
        assert_eq!(settings(json!({})).unwrap(), ClusterSettings::default());
    }

    #[test]
    fn what_cannot_be_used_names_its_property() {
        assert_eq!(settings(json!({"commandExecutor": "vm"})).unwrap_err().property, "properties.commandExecutor");
        let bad = settings(json!({"commandLimits": {"timeoutSeconds": 0}})).unwrap_err();
        assert_eq!(bad.property, "properties.commandLimits");
        assert!(bad.message.contains("positive"), "{bad}");
        let bad = settings(json!({"commandApproval": {"mode": "always", "approvers": 9}})).unwrap_err();
        assert_eq!(bad.property, "properties.commandApproval");
        assert!(bad.message.contains("'approvers'"), "{bad}");
    }
}
