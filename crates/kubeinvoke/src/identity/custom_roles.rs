//! Custom role definitions (`az role definition create`): reading and checking the body Azure's
//! clients send, and keeping them as documents in the store under the root scope, since a role
//! definition's GUID is unique across scopes.

use serde_json::{Map, Value, json};

use super::rbac::{self, RoleDefinition};
use crate::store::{DocumentKind, DocumentRecord, Store, StoreResult};

/// Custom roles are kept under this scope; where they may be assigned is in the document.
pub(crate) const STORE_SCOPE: &str = "/";

/// Why a role definition body was refused: the property and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub(crate) struct InvalidRole {
    pub property: &'static str,
    pub message: String,
}

fn invalid(property: &'static str, message: impl Into<String>) -> InvalidRole {
    InvalidRole { property, message: message.into() }
}

/// The custom role with this GUID, if any.
pub(crate) async fn find(store: &dyn Store, id: &str) -> StoreResult<Option<RoleDefinition>> {
    let found = store.documents().get_document(DocumentKind::RoleDefinition, STORE_SCOPE, id).await?;
    Ok(found.map(|record| from_record(&record)))
}

/// Every custom role.
pub(crate) async fn all(store: &dyn Store) -> StoreResult<Vec<RoleDefinition>> {
    let records = store.documents().list_documents(DocumentKind::RoleDefinition, Some(STORE_SCOPE)).await?;
    Ok(records.iter().map(from_record).collect())
}

/// A role read back from its stored document (written by [`parse`], so well-formed).
pub(crate) fn from_record(record: &DocumentRecord) -> RoleDefinition {
    let d = &record.document;
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let permission = d.get("permissions").and_then(|p| p.get(0));
    RoleDefinition {
        id: record.name.to_lowercase(),
        name: d.get("roleName").and_then(Value::as_str).unwrap_or_default().to_string(),
        description: d.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
        custom: true,
        actions: strings(permission.and_then(|p| p.get("actions"))),
        not_actions: strings(permission.and_then(|p| p.get("notActions"))),
        assignable_scopes: strings(d.get("assignableScopes")),
    }
}

/// The stored document of a role.
pub(crate) fn to_document(role: &RoleDefinition) -> Map<String, Value> {
    let value = json!({
        "roleName": role.name,
        "description": role.description,
        "type": "CustomRole",
        "assignableScopes": role.assignable_scopes,
        "permissions": [{"actions": role.actions, "notActions": role.not_actions, "dataActions": [], "notDataActions": []}],
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Reads a PUT body (`{"properties": {"roleName", "description"?, "permissions": [{"actions",
/// "notActions"?}], "assignableScopes"}}`) for the role `id`. Scopes are checked by the caller,
/// which knows the ARM grammar.
pub(crate) fn parse(id: &str, body: &Value) -> Result<RoleDefinition, InvalidRole> {
    let properties = body.get("properties").and_then(Value::as_object).ok_or_else(|| {
        invalid("properties", "'properties' must be an object with roleName, permissions and assignableScopes.")
    })?;
    let role_name = properties
        .get("roleName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 512)
        .ok_or_else(|| invalid("properties.roleName", "'properties.roleName' is required (1-512 characters)."))?;
    if rbac::role_by_name(role_name).is_some() {
        return Err(invalid("properties.roleName", format!("'{role_name}' is the name of a built-in role.")));
    }
    let description = match properties.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err(invalid("properties.description", "'properties.description' must be a string.")),
    };
    let permissions = properties.get("permissions").and_then(Value::as_array).ok_or_else(|| {
        invalid(
            "properties.permissions",
            "'properties.permissions' must be an array with one {actions, notActions} object.",
        )
    })?;
    let [permission] = permissions.as_slice() else {
        return Err(invalid(
            "properties.permissions",
            format!("'properties.permissions' must hold exactly one entry (it has {}).", permissions.len()),
        ));
    };
    let actions = action_list(permission.get("actions"), "properties.permissions[0].actions")?;
    if actions.is_empty() {
        return Err(invalid("properties.permissions[0].actions", "A custom role needs at least one action."));
    }
    let not_actions = action_list(permission.get("notActions"), "properties.permissions[0].notActions")?;
    for data in ["dataActions", "notDataActions"] {
        if permission.get(data).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            return Err(invalid(
                "properties.permissions[0].dataActions",
                format!("'{data}' is not supported: kubeinvoke has no data plane actions."),
            ));
        }
    }
    let scopes = properties.get("assignableScopes").and_then(Value::as_array).ok_or_else(|| {
        invalid("properties.assignableScopes", "'properties.assignableScopes' must be an array of scopes.")
    })?;
    let assignable_scopes: Vec<String> = scopes
        .iter()
        .map(|s| s.as_str().map(|s| s.trim_end_matches('/').to_string()).filter(|s| !s.is_empty()))
        .collect::<Option<_>>()
        .filter(|s: &Vec<String>| !s.is_empty())
        .ok_or_else(|| {
            invalid(
                "properties.assignableScopes",
                "'properties.assignableScopes' must list at least one subscription, resource group or resource id.",
            )
        })?;
    Ok(RoleDefinition {
        id: id.to_lowercase(),
        name: role_name.to_string(),
        description,
        custom: true,
        actions,
        not_actions,
        assignable_scopes,
    })
}

fn action_list(value: Option<&Value>, property: &'static str) -> Result<Vec<String>, InvalidRole> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let refuse = || {
        invalid(
            property,
            format!(
                "'{property}' must be an array of action strings like 'Microsoft.ContainerService/managedClusters/read'."
            ),
        )
    };
    let list = value.as_array().ok_or_else(refuse)?;
    list.iter()
        .map(|a| {
            a.as_str()
                .map(str::trim)
                .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "*/._-".contains(c)))
                .map(str::to_string)
                .ok_or_else(refuse)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(properties: Value) -> Value {
        json!({ "properties": properties })
    }

    #[test]
    fn what_az_role_definition_create_sends_is_read() {
        let sent = body(json!({
            "roleName": "Saved command runner", "description": "d", "type": "CustomRole",
            "assignableScopes": ["/subscriptions/s"],
            "permissions": [{"actions": ["Microsoft.ContainerService/managedClusters/runSavedCommand/action", "*/read"],
                             "notActions": [], "dataActions": [], "notDataActions": []}]
        }));
        let role = parse("ABC", &sent).unwrap();
        assert_eq!(role.id, "abc");
        assert_eq!(role.actions.len(), 2);
        let record = DocumentRecord {
            kind: DocumentKind::RoleDefinition,
            scope: "/".into(),
            name: "abc".into(),
            document: to_document(&role),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(from_record(&record), role);
    }

    #[test]
    fn refusals_name_the_property() {
        let property = |p: Value| parse("x", &body(p)).unwrap_err().property;
        let ok_permissions = json!([{"actions": ["*/read"]}]);
        assert_eq!(property(json!({"permissions": ok_permissions, "assignableScopes": ["/s"]})), "properties.roleName");
        assert_eq!(
            property(json!({"roleName": "Reader", "permissions": ok_permissions, "assignableScopes": ["/s"]})),
            "properties.roleName"
        );
        assert_eq!(
            property(json!({"roleName": "r", "permissions": [], "assignableScopes": ["/s"]})),
            "properties.permissions"
        );
        assert_eq!(
            property(json!({"roleName": "r", "permissions": [{"actions": []}], "assignableScopes": ["/s"]})),
            "properties.permissions[0].actions"
        );
        assert_eq!(
            property(json!({"roleName": "r", "permissions": [{"actions": ["a b"]}], "assignableScopes": ["/s"]})),
            "properties.permissions[0].actions"
        );
        assert_eq!(
            property(json!({"roleName": "r", "permissions": ok_permissions, "assignableScopes": []})),
            "properties.assignableScopes"
        );
        assert_eq!(
            property(
                json!({"roleName": "r", "permissions": [{"actions": ["*"], "dataActions": ["x"]}], "assignableScopes": ["/s"]})
            ),
            "properties.permissions[0].dataActions"
        );
    }
}
