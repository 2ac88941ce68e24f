//! The JSON bodies on the wire, as typed values. Handlers build responses only from these.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::command::{CommandRecord, CommandState};
use crate::time::rfc3339;

/// A fixed string the server writes (a resource type, a state) that the people's CLI reads back
/// owned: the same wire type serves both directions.
pub(crate) type Label = std::borrow::Cow<'static, str>;

pub(crate) const CLUSTER_TYPE: &str = "Microsoft.ContainerService/ManagedClusters";
pub(crate) const GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";

/// `{"error": {"code", "message", "target"?}}`, the body of every non-2xx response.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CloudError {
    pub error: CloudErrorBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CloudErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl CloudError {
    pub(crate) fn new(code: &str, message: String, target: Option<&str>) -> Self {
        CloudError { error: CloudErrorBody { code: code.to_string(), message, target: target.map(str::to_string) } }
    }
}

/// The body of `POST …/runCommand`.
#[derive(Debug, Deserialize)]
pub(crate) struct RunCommandRequest {
    pub command: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default, rename = "clusterToken")]
    pub cluster_token: Option<String>,
    /// An extension Azure's clients omit: lowers the server's and the cluster's timeout.
    #[serde(default, rename = "timeoutInSeconds")]
    pub timeout_in_seconds: Option<Value>,
}

/// The body of `GET …/commandResults/{id}`: 202 while in progress, 200 when finished.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunCommandResult {
    pub id: String,
    pub properties: CommandResultProperties,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandResultProperties {
    pub provisioning_state: CommandState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&CommandRecord> for RunCommandResult {
    fn from(c: &CommandRecord) -> Self {
        let finished = c.state.is_terminal();
        RunCommandResult {
            id: c.id.to_string(),
            properties: CommandResultProperties {
                provisioning_state: c.state,
                exit_code: c.exit_code,
                started_at: c.started_at.map(rfc3339),
                finished_at: c.finished_at.map(rfc3339),
                logs: finished.then(|| c.logs.clone().unwrap_or_default()),
                reason: c.reason.clone(),
            },
        }
    }
}

/// One entry of a cluster's command history (an extension): the result without logs, plus
/// what ran, who ran it and when.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CommandHistoryEntry {
    pub id: String,
    pub properties: CommandHistoryProperties,
}

/// The result's properties (without logs) plus what ran, who ran it and when.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandHistoryProperties {
    #[serde(flatten)]
    pub result: CommandResultProperties,
    pub command: String,
    pub submitted_by: String,
    pub submitted_at: String,
    /// The saved command it ran, with its parameters; a secret one shows as `(secret)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// The identity it acted as (`user jane (groups readers)`, `serviceAccount deployer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
}

/// How the history shows a secret parameter: never its value.
pub(crate) const SECRET_SHOWN_AS: &str = "(secret)";

impl From<&crate::command::CommandSummary> for CommandHistoryEntry {
    fn from(c: &crate::command::CommandSummary) -> Self {
        let RunCommandResult { id, mut properties } = RunCommandResult::from(&c.record);
        properties.logs = None;
        CommandHistoryEntry {
            id,
            properties: CommandHistoryProperties {
                result: properties,
                command: c.command.clone(),
                submitted_by: c.submitted_by.clone(),
                submitted_at: rfc3339(c.record.submitted_at),
                saved_command: c.saved_command.clone(),
                parameters: c.saved_command.as_ref().map(|_| {
                    let plain = c.parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone())));
                    let secret = c.secret_names.iter().map(|k| (k.clone(), Value::String(SECRET_SHOWN_AS.into())));
                    plain.chain(secret).collect()
                }),
                run_as: c.run_as.as_ref().map(crate::run_as::RunAs::describe),
            },
        }
    }
}

/// `{"value": [...], "nextLink"?}`, every ARM list.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListResult<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Subscription {
    pub id: String,
    pub subscription_id: String,
    pub display_name: String,
    pub state: Label,
    pub tenant_id: String,
    pub home_tenant_id: String,
    pub authorization_source: Label,
    pub managed_by_tenants: Vec<Value>,
}

impl Subscription {
    pub(crate) fn new(subscription_id: &str, tenant_id: &str) -> Self {
        Subscription {
            id: format!("/subscriptions/{subscription_id}"),
            subscription_id: subscription_id.to_string(),
            display_name: "kubeinvoke".to_string(),
            state: "Enabled".into(),
            tenant_id: tenant_id.to_string(),
            home_tenant_id: tenant_id.to_string(),
            authorization_source: "RoleBased".into(),
            managed_by_tenants: Vec::new(),
        }
    }
}

/// The body of `PUT /subscriptions/{s}/resourcegroups/{rg}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ResourceGroupRequest {
    pub location: Option<String>,
    /// Any JSON, so that tags of the wrong shape get [`crate::resource::tags`]'s message.
    #[serde(default)]
    pub tags: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResourceGroup {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Label,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    pub properties: ProvisioningProperties,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProvisioningProperties {
    pub provisioning_state: Label,
}

impl ResourceGroup {
    pub(crate) fn new(subscription: &str, name: &str, location: &str, tags: Option<Map<String, Value>>) -> Self {
        ResourceGroup {
            id: group_id(subscription, name),
            name: name.to_string(),
            kind: GROUP_TYPE.into(),
            location: location.to_string(),
            tags,
            properties: ProvisioningProperties { provisioning_state: "Succeeded".into() },
        }
    }
}

/// `{"kubeconfigs": [{"name", "value": base64}]}` from listCluster*Credential.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialResults {
    pub kubeconfigs: Vec<CredentialResult>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CredentialResult {
    pub name: &'static str,
    pub value: String,
}

/// `GET /metadata/endpoints`: enough of Azure's cloud metadata for `az cloud register`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CloudMetadata {
    pub name: &'static str,
    pub resource_manager: String,
    /// Where az sends its Microsoft Graph calls (resolving principal names).
    pub microsoft_graph_resource_id: String,
    pub authentication: CloudAuthentication,
    pub suffixes: Map<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CloudAuthentication {
    pub login_endpoint: String,
    pub audiences: Vec<&'static str>,
    pub tenant: &'static str,
    pub identity_provider: &'static str,
}

impl CloudMetadata {
    /// `audiences`: the canonical spellings (with the trailing slash) of what tokens may carry.
    pub(crate) fn new(base_url: &str, graph_resource: String, audiences: Vec<&'static str>) -> Self {
        CloudMetadata {
            name: "kubeinvoke",
            resource_manager: format!("{base_url}/"),
            microsoft_graph_resource_id: graph_resource,
            authentication: CloudAuthentication {
                login_endpoint: base_url.to_string(),
                audiences,
                tenant: "common",
                identity_provider: "AAD",
            },
            suffixes: Map::new(),
        }
    }
}

pub(crate) fn group_id(subscription: &str, group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{group}")
}

/// Built in one allocation: every authorized cluster request names its cluster's id as the scope.
pub(crate) fn cluster_id(subscription: &str, group: &str, name: &str) -> String {
    const PROVIDER: &str = "/providers/Microsoft.ContainerService/managedClusters/";
    ["/subscriptions/", subscription, "/resourceGroups/", group, PROVIDER, name].concat()
}

/// Renders a stored managed cluster document with the fields the server owns: its identity,
/// and `properties.fqdn` derived from the registered kubeconfig.
pub(crate) fn managed_cluster(id: String, name: &str, document: &Map<String, Value>, fqdn: Option<String>) -> Value {
    let mut body = document.clone();
    body.insert("id".into(), Value::String(id));
    body.insert("name".into(), Value::String(name.to_string()));
    body.insert("type".into(), Value::String(CLUSTER_TYPE.to_string()));
    if let (Some(fqdn), Some(Value::Object(properties))) = (fqdn, body.get_mut("properties")) {
        properties.insert("fqdn".into(), Value::String(fqdn));
    }
    Value::Object(body)
}

/// The body of `PUT …/roleAssignments/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct RoleAssignmentRequest {
    pub properties: RoleAssignmentRequestProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleAssignmentRequestProperties {
    pub role_definition_id: String,
    pub principal_id: String,
    #[serde(default)]
    pub principal_type: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RoleAssignment {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: RoleAssignmentProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleAssignmentProperties {
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub scope: String,
    pub created_on: String,
    pub updated_on: String,
}

/// What an assignment is, as the wire shows it (the store's record, borrowed field by field).
pub(crate) struct AssignmentFields<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub role_definition_id: &'a str,
    pub principal_id: &'a str,
    pub principal_type: &'a str,
    pub created_at: i64,
}

impl RoleAssignment {
    /// As listed from `viewer` (a scope): ARM writes role definition ids under the subscription
    /// the caller asked about, so an assignment made at `/` still matches that subscription's
    /// role definitions (az relies on it to fill `roleDefinitionName`).
    pub(crate) fn seen_from(a: AssignmentFields<'_>, viewer: &str) -> Self {
        let definition_scope =
            if role_definition_id(viewer, "").starts_with("/subscriptions/") { viewer } else { a.scope };
        let scope_prefix = if a.scope == "/" { "" } else { a.scope };
        RoleAssignment {
            id: format!("{scope_prefix}/providers/Microsoft.Authorization/roleAssignments/{}", a.name),
            name: a.name.to_string(),
            kind: "Microsoft.Authorization/roleAssignments",
            properties: RoleAssignmentProperties {
                role_definition_id: role_definition_id(definition_scope, a.role_definition_id),
                principal_id: a.principal_id.to_string(),
                principal_type: a.principal_type.to_string(),
                scope: a.scope.to_string(),
                created_on: rfc3339(a.created_at),
                updated_on: rfc3339(a.created_at),
            },
        }
    }
}

/// A role definition's resource id as seen from `scope`'s subscription (or the root).
pub(crate) fn role_definition_id(scope: &str, guid: &str) -> String {
    let subscription = scope.split('/').nth(2).filter(|_| scope.to_ascii_lowercase().starts_with("/subscriptions/"));
    match subscription {
        Some(s) => format!("/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RoleDefinitionResource {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: RoleDefinitionProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleDefinitionProperties {
    pub role_name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    pub assignable_scopes: Vec<String>,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

/// What the wire shows of a role definition, built in or custom.
pub(crate) struct RoleDefinitionFields<'a> {
    pub id: &'a str,
    pub role_name: &'a str,
    pub description: &'a str,
    pub custom: bool,
    pub actions: &'a [String],
    pub not_actions: &'a [String],
    pub assignable_scopes: &'a [String],
}

impl RoleDefinitionResource {
    /// A role definition as seen from `scope`.
    pub(crate) fn new(scope: &str, role: RoleDefinitionFields<'_>) -> Self {
        RoleDefinitionResource {
            id: role_definition_id(scope, role.id),
            name: role.id.to_string(),
            kind: "Microsoft.Authorization/roleDefinitions",
            properties: RoleDefinitionProperties {
                role_name: role.role_name.to_string(),
                kind: if role.custom { "CustomRole" } else { "BuiltInRole" },
                description: role.description.to_string(),
                assignable_scopes: role.assignable_scopes.to_vec(),
                permissions: vec![Permission {
                    actions: role.actions.to_vec(),
                    not_actions: role.not_actions.to_vec(),
                    data_actions: Vec::new(),
                    not_data_actions: Vec::new(),
                }],
            },
        }
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the `/adfs` variant).
#[derive(Debug, Serialize)]
pub(crate) struct OpenIdConfiguration {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub response_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub tenant_region_scope: Option<String>,
    pub cloud_instance_name: &'static str,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenResponse {
    pub token_type: Label,
    pub expires_in: i64,
    pub ext_expires_in: i64,
    pub access_token: String,
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OAuthError {
    pub error: Label,
    #[serde(default)]
    pub error_description: String,
}

/// A document resource of the extensions (a saved command, an event subscription) as the wire
/// shows it: ARM's envelope around the stored properties and the fields the server sets there.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DocumentResource {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Label,
    pub properties: Map<String, Value>,
    #[serde(rename = "systemData", skip_serializing_if = "Option::is_none")]
    pub system_data: Option<SystemData>,
}

/// ARM's `systemData`: who wrote a resource first and last, and when.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SystemData {
    pub created_at: String,
    pub created_by: Value,
    pub last_modified_at: String,
    pub last_modified_by: Value,
}

/// The body of `POST …/runSavedCommand` (an extension).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunSavedCommandRequest {
    /// The saved command's id.
    #[serde(default)]
    pub saved_command: Option<String>,
    /// Values of its parameters by name (checked against its declaration).
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub cluster_token: Option<String>,
    #[serde(default)]
    pub timeout_in_seconds: Option<Value>,
}

/// An event subscription's `destination` as Event Grid shows it (the URL's query, which may
/// hold a secret, never).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookDestination {
    pub endpoint_type: &'static str,
    pub properties: WebhookDestinationProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookDestinationProperties {
    pub endpoint_base_url: String,
    pub max_events_per_batch: u32,
    pub preferred_batch_size_in_kilobytes: u32,
}

/// `POST …/getDeliveryAttributes`: the static attributes sent with every delivery.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryAttributes {
    pub value: Vec<DeliveryAttribute>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeliveryAttribute {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: DeliveryAttributeProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryAttributeProperties {
    pub value: Value,
    pub is_secret: bool,
}

/// A managed cluster as the people's CLI reads it back: ARM's envelope and what it shows.
#[derive(Debug, Deserialize)]
pub(crate) struct ManagedClusterView {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub properties: ManagedClusterViewProperties,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ManagedClusterViewProperties {
    pub fqdn: Option<String>,
}

/// A saved command's properties as the people's CLI writes and reads them (the server validates
/// what it receives field by field, in `saved_command.rs`, to name what is wrong).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SavedCommandProperties {
    #[serde(default)]
    pub script: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, ParameterDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
}

/// A saved command's parameter declaration (`"ns": {"type": "string", "pattern": …}`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ParameterDeclaration {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// An integer's bounds: absent for no range, `null` for an open end of one (`..10`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<Option<i64>>,
}

/// A saved command as the people's CLI reads it back.
#[derive(Debug, Deserialize)]
pub(crate) struct SavedCommandView {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub properties: SavedCommandProperties,
}

/// A saved command PUT as the people's CLI sends it.
#[derive(Debug, Serialize)]
pub(crate) struct SavedCommandWrite {
    pub properties: SavedCommandProperties,
}

/// A managed cluster PUT as the people's CLI sends it: the kubeconfig to register.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterRegistration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    pub properties: RegistrationProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegistrationProperties {
    pub kubeconfig: String,
    /// Four eyes for the cluster's commands (an extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_approval: Option<CommandApproval>,
}

/// A cluster's `properties.commandApproval`, as the people's CLI registers it (the server reads
/// it in `approval::ApprovalPolicy::parse`, which names what is wrong).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandApproval {
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
}

/// The body of `POST …/runCommand` as the people's CLI sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunCommandBody<'a> {
    /// `null` when none was given: the server names what is missing.
    pub command: Option<&'a str>,
    pub context: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
}

/// The body of `POST …/runSavedCommand` as the people's CLI sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunSavedCommandBody<'a> {
    pub saved_command: &'a str,
    pub parameters: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
}
