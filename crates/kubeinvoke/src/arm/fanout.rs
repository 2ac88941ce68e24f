//! The wire shapes of fan-out runs (an extension): the submission body and the run resource.

use serde::Serialize;
use serde_json::{Map, Value};

use super::ApiError;
use super::path::Route;
use crate::fanout::{Limit, RunRecord, RunScope, TargetRecord};
use crate::resource::ClusterRef;
use crate::time::rfc3339;

pub(crate) const RUN_TYPE: &str = "Microsoft.ContainerService/commandRuns";
/// At most this many clusters per run: a run is read back whole on every poll.
pub(crate) const MAX_TARGETS: usize = 5000;
const DEFAULT_CONCURRENCY: Limit = Limit::Count(10);
/// Unless told otherwise a run goes on through failures (an audit wants every answer).
const DEFAULT_ERRORS: Limit = Limit::Percent(100);

/// Which clusters a run targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Clusters whose ARM tags include every pair (names compare case-insensitively, as Azure's).
    Tags(Vec<(String, String)>),
    /// These clusters, in this order.
    ClusterIds(Vec<ClusterRef>),
}

/// The body of `POST {scope}/providers/Microsoft.ContainerService/runCommand`.
#[derive(Debug)]
pub(crate) struct FanOutRequest {
    pub command: String,
    pub context: Option<String>,
    pub cluster_token: Option<String>,
    pub targets: Targets,
    pub max_concurrency: Limit,
    pub max_errors: Limit,
}

impl FanOutRequest {
    /// Reads and checks the body; every refusal names the property.
    pub(crate) fn from_json(body: Value) -> Result<Self, ApiError> {
        let Value::Object(body) = body else {
            return Err(ApiError::InvalidRequestContent("the body must be a JSON object".into()));
        };
        let text = |name: &'static str| -> Result<Option<String>, ApiError> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::invalid(name, format!("'{name}' must be a string."))),
            }
        };
        let command = text("command")?
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| ApiError::invalid("command", "The 'command' property is required and must not be empty."))?;
        let limit = |name: &'static str, default: Limit, at_least_one: bool| match body.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => {
                Limit::from_json(name, value, at_least_one).map_err(|e| ApiError::invalid(name, e.to_string()))
            }
        };
        Ok(FanOutRequest {
            command,
            context: text("context")?,
            cluster_token: text("clusterToken")?.filter(|t| !t.is_empty()),
            targets: targets(body.get("targets"))?,
            max_concurrency: limit("maxConcurrency", DEFAULT_CONCURRENCY, true)?,
            max_errors: limit("maxErrors", DEFAULT_ERRORS, false)?,
        })
    }
}

fn targets(value: Option<&Value>) -> Result<Targets, ApiError> {
    let refuse = |message: &str| ApiError::invalid("targets", message.to_string());
    let Some(Value::Object(targets)) = value else {
        return Err(refuse(
            "'targets' is required: {\"tags\": {\"name\": \"value\", ...}} or {\"clusterIds\": [\"<managed cluster id>\", ...]}.",
        ));
    };
    match (targets.get("tags"), targets.get("clusterIds")) {
        (Some(tags), None) => tag_pairs(tags).map(Targets::Tags),
        (None, Some(ids)) => cluster_ids(ids).map(Targets::ClusterIds),
        (Some(_), Some(_)) => Err(refuse("'targets' takes either 'tags' or 'clusterIds', not both.")),
        (None, None) => Err(refuse("'targets' must have 'tags' or 'clusterIds'.")),
    }
}

fn tag_pairs(sent: &Value) -> Result<Vec<(String, String)>, ApiError> {
    let refuse = |message: String| ApiError::invalid("targets.tags", message);
    let Value::Object(tags) = sent else {
        return Err(refuse("'targets.tags' must be an object of tag names and values.".into()));
    };
    if tags.is_empty() {
        return Err(refuse("'targets.tags' must name at least one tag.".into()));
    }
    // Only a tag a cluster could carry can select one (and a NUL never reaches a store).
    crate::resource::tags::check(sent).map_err(|e| refuse(format!("In 'targets.tags': {e}")))?;
    tags.iter()
        .map(|(name, value)| match value {
            Value::String(v) => Ok((name.clone(), v.clone())),
            _ => Err(refuse(format!("The value of tag '{name}' in 'targets.tags' must be a string."))),
        })
        .collect()
}

fn cluster_ids(ids: &Value) -> Result<Vec<ClusterRef>, ApiError> {
    let refuse = |message: String| ApiError::invalid("targets.clusterIds", message);
    let Value::Array(ids) = ids else {
        return Err(refuse("'targets.clusterIds' must be an array of managed cluster ids.".into()));
    };
    if ids.is_empty() {
        return Err(refuse("'targets.clusterIds' must list at least one cluster.".into()));
    }
    if ids.len() > MAX_TARGETS {
        return Err(refuse(format!("'targets.clusterIds' lists {} clusters; at most {MAX_TARGETS}.", ids.len())));
    }
    let mut clusters: Vec<ClusterRef> = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let parsed = id.as_str().and_then(super::path::parse).map(|p| p.route);
        let cluster = match parsed {
            Some(Ok(Route::Cluster(cluster))) => cluster,
            _ => {
                return Err(refuse(format!(
                    "'targets.clusterIds[{index}]' ({id}) is not a managed cluster id \
                     (/subscriptions/{{s}}/resourceGroups/{{rg}}/providers/Microsoft.ContainerService/managedClusters/{{name}})."
                )));
            }
        };
        let same = |c: &ClusterRef| {
            c.subscription.as_str().eq_ignore_ascii_case(cluster.subscription.as_str())
                && c.group.key() == cluster.group.key()
                && c.name.key() == cluster.name.key()
        };
        if !clusters.iter().any(same) {
            clusters.push(cluster);
        }
    }
    Ok(clusters)
}

/// A fan-out `runCommand` body as the people's CLI sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FanOutBody<'a> {
    pub command: &'a str,
    pub context: &'a str,
    pub targets: FanOutTargets,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<&'a str>,
}

/// The clusters a fan-out names: ids, or tags they all carry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FanOutTargets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
}

/// The run resource: `GET …/commandRuns/{id}` and the body of the 202 that accepts it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct CommandRun {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: crate::arm::wire::Label,
    pub properties: CommandRunProperties,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandRunProperties {
    pub provisioning_state: crate::arm::wire::Label,
    pub command: String,
    pub max_concurrency: String,
    pub max_errors: String,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<String>,
    /// Targets per state, every state present.
    pub counts: Map<String, Value>,
    /// The first targets in selection order; the others at `targetsNextLink`.
    pub targets: Vec<CommandRunTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_next_link: Option<String>,
    /// Set when some target's cluster held the run for approval: approved once, as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<RunApproval>,
}

/// A held run's approval: how many approvers it needs, until when, and who decided.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunApproval {
    pub approvals_needed: u8,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    pub approvals: Vec<crate::arm::approvals::DecisionView>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandRunTarget {
    pub cluster_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    pub state: crate::arm::wire::Label,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CommandRun {
    /// The run with the targets it carries; `targets_next_link` where the others are.
    pub(crate) fn new(run: &RunRecord, targets_next_link: Option<String>) -> Self {
        let scope = RunScope::new(run.scope.clone());
        let counts = run.counts().into_iter().map(|(state, n)| (state.as_str().to_string(), Value::from(n))).collect();
        CommandRun {
            id: scope.run_id(&run.id),
            name: run.id.to_string(),
            kind: RUN_TYPE.into(),
            properties: CommandRunProperties {
                provisioning_state: run.state.as_str().into(),
                command: run.command.clone(),
                max_concurrency: run.max_concurrency.to_string(),
                max_errors: run.max_errors.to_string(),
                created_at: rfc3339(run.created_at),
                created_by: run.created_by.clone(),
                finished_at: run.finished_at.map(rfc3339),
                canceled_by: run.cancel_requested_by.clone(),
                counts,
                targets: run.targets.iter().map(CommandRunTarget::new).collect(),
                targets_next_link,
                approval: run.hold.as_ref().map(|hold| RunApproval {
                    approvals_needed: hold.needed,
                    expires_at: rfc3339(hold.deadline),
                    approved_at: run.approved_at.map(rfc3339),
                    approvals: run.decisions.iter().map(crate::arm::approvals::DecisionView::of).collect(),
                }),
            },
        }
    }
}

impl CommandRunTarget {
    pub(crate) fn new(t: &TargetRecord) -> Self {
        CommandRunTarget {
            cluster_id: t.cluster_id.clone(),
            command_id: t.command_id.as_ref().map(ToString::to_string),
            state: t.state.as_str().into(),
            exit_code: t.exit_code,
            started_at: t.started_at.map(rfc3339),
            finished_at: t.finished_at.map(rfc3339),
            reason: t.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    fn refusal(body: Value) -> (std::borrow::Cow<'static, str>, String) {
        match FanOutRequest::from_json(body) {
            Err(ApiError::InvalidParameter { target, message }) => (target, message),
            other => panic!("expected a 400 naming a property, got {other:?}"),
        }
    }

    #[test]
    fn a_request_reads_with_defaults() {
        let request =
            FanOutRequest::from_json(json!({"command": "true", "targets": {"tags": {"env": "prod"}}})).unwrap();
        assert_eq!(request.targets, Targets::Tags(vec![("env".into(), "prod".into())]));
        assert_eq!((request.max_concurrency, request.max_errors), (Limit::Count(10), Limit::Percent(100)));
    }

    #[test]
    fn every_refusal_names_its_property() {
        assert_eq!(refusal(json!({"targets": {"tags": {"a": "b"}}})).0, "command");
        assert_eq!(refusal(json!({"command": "x"})).0, "targets");
        assert_eq!(refusal(json!({"command": "x", "targets": {}})).0, "targets");
        assert_eq!(refusal(json!({"command": "x", "targets": {"tags": {}}})).0, "targets.tags");
        assert_eq!(refusal(json!({"command": "x", "targets": {"tags": {"a": 1}}})).0, "targets.tags");
        let (target, message) = refusal(json!({"command": "x", "targets": {"clusterIds": ["/nope"]}}));
        assert_eq!(target, "targets.clusterIds");
        assert!(message.contains("clusterIds[0]"), "{message}");
        let limits = json!({"command": "x", "targets": {"tags": {"a": "b"}}, "maxConcurrency": "0%"});
        assert_eq!(refusal(limits).0, "maxConcurrency");
        let limits = json!({"command": "x", "targets": {"tags": {"a": "b"}}, "maxErrors": "lots"});
        assert_eq!(refusal(limits).0, "maxErrors");
    }

    #[test]
    fn listed_ids_are_parsed_and_deduplicated() {
        let id =
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1");
        let request = FanOutRequest::from_json(
            json!({"command": "x", "targets": {"clusterIds": [id, id.replace("/rg/", "/RG/").replace("/c1", "/C1")]}}),
        )
        .unwrap();
        let Targets::ClusterIds(ids) = request.targets else { panic!("ids") };
        assert_eq!(ids.len(), 1);
    }
}
