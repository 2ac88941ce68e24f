//! Microsoft.Authorization: role assignments (create, read, delete, list) and role definitions
//! (the built-in ones, and custom ones created, replaced and deleted), at any scope, as
//! `az role assignment` and `az role definition` use them.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::arm::ApiError;
use crate::arm::path::{self, Route};
use crate::arm::refusal::AuthorizationRefusal as Refusal;
use crate::arm::wire::{
    AssignmentFields, ListResult, RoleAssignment, RoleAssignmentRequest, RoleDefinitionFields, RoleDefinitionResource,
};
use crate::identity::Caller;
use crate::identity::custom_roles;
use crate::identity::rbac::{self, BUILT_IN_ROLES, RoleDefinition};
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::RoleAssignmentRecord;
use crate::store::{DocumentKind, DocumentRecord};
use crate::time::now_millis;

fn not_found(name: &str) -> ApiError {
    Refusal::AssignmentNotFound(name.to_string()).into()
}

pub(crate) async fn put_assignment(
    app: &AppState,
    ctx: &RequestContext,
    scope: &str,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if uuid::Uuid::try_parse(name).is_err() {
        return Err(Refusal::InvalidAssignmentId(name.to_string()).into());
    }
    let request: RoleAssignmentRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let wanted = request.properties;
    let role = role_named(app, &wanted.role_definition_id)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::UnknownRole(wanted.role_definition_id.clone())))?;
    if !role.assignable_at(scope) {
        return Err(Refusal::NotAssignableHere {
            role: role.name.clone(),
            scope: scope.to_string(),
            assignable: role.assignable_scopes.join(", "),
        }
        .into());
    }
    let principal_id = wanted.principal_id.to_lowercase();
    // Principals of trusted external issuers are not in our directory: any object id is accepted.
    if uuid::Uuid::try_parse(&principal_id).is_err() {
        return Err(Refusal::InvalidPrincipalId(principal_id).into());
    }
    let existing = app.store.identity().list_role_assignments().await?;
    let same_grant = |a: &&RoleAssignmentRecord| {
        a.scope.eq_ignore_ascii_case(scope) && a.role_definition_id == role.id && a.principal_id == principal_id
    };
    if let Some(twin) = existing.iter().find(same_grant).filter(|a| a.name != name) {
        return Err(Refusal::AssignmentExists(twin.name.clone()).into());
    }
    let record = RoleAssignmentRecord {
        name: name.to_string(),
        scope: scope.to_string(),
        role_definition_id: role.id.clone(),
        principal_id,
        principal_type: wanted.principal_type.unwrap_or_else(|| "ServicePrincipal".into()),
        created_at: now_millis(),
    };
    let put = app.store.identity().put_role_assignment(record.clone()).await?;
    let unchanged = put.value.scope.eq_ignore_ascii_case(scope)
        && put.value.role_definition_id == record.role_definition_id
        && put.value.principal_id == record.principal_id;
    if !put.created && !unchanged {
        return Err(Refusal::AssignmentUpdate.into());
    }
    Ok(json(StatusCode::CREATED, &assignment_resource(&put.value, &put.value.scope)))
}

pub(crate) async fn get_assignment(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    let found = app.store.identity().get_role_assignment(name).await?.filter(|a| a.scope.eq_ignore_ascii_case(scope));
    let found = found.ok_or_else(|| not_found(name))?;
    Ok(json(StatusCode::OK, &assignment_resource(&found, &found.scope)))
}

pub(crate) async fn delete_assignment(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    match app.store.identity().get_role_assignment(name).await?.filter(|a| a.scope.eq_ignore_ascii_case(scope)) {
        Some(found) => {
            app.store.identity().delete_role_assignment(name).await?;
            Ok(json(StatusCode::OK, &assignment_resource(&found, &found.scope)))
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Assignments that apply at `scope` (at or above it) and, without `atScope()`, those below it.
/// `$filter=principalId eq '…'` or `assignedTo('…')` narrows to one principal.
pub(crate) async fn list_assignments(app: &AppState, ctx: &RequestContext, scope: &str) -> Result<Response, ApiError> {
    let filter = ctx.query("$filter").unwrap_or_default().to_string();
    let principal = quoted_after(&filter, "principalId eq").or_else(|| quoted_after(&filter, "assignedTo("));
    let at_scope_only = filter.contains("atScope()");
    let value = app
        .store
        .identity()
        .list_role_assignments()
        .await?
        .iter()
        .filter(|a| rbac::scope_covers(&a.scope, scope) || (!at_scope_only && rbac::scope_covers(scope, &a.scope)))
        .filter(|a| principal.as_ref().is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p)))
        .map(|a| assignment_resource(a, scope))
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

/// A built-in or custom role from a GUID or a full roleDefinitions id.
async fn role_named(app: &AppState, id_or_name: &str) -> Result<Option<RoleDefinition>, ApiError> {
    if let Some(role) = rbac::resolve_role(id_or_name) {
        return Ok(Some(role.definition()));
    }
    let guid = id_or_name.rsplit('/').next().unwrap_or(id_or_name);
    Ok(custom_roles::find(app.store.as_ref(), guid).await?)
}

/// Built-in roles, then the custom roles assignable at or below `scope`, or above it.
async fn roles_seen_from(app: &AppState, scope: &str) -> Result<Vec<RoleDefinition>, ApiError> {
    let mut roles: Vec<RoleDefinition> = BUILT_IN_ROLES.iter().map(|r| r.definition()).collect();
    let custom = custom_roles::all(app.store.as_ref()).await?;
    roles.extend(custom.into_iter().filter(|role| {
        role.assignable_scopes.iter().any(|s| rbac::scope_covers(s, scope) || rbac::scope_covers(scope, s))
    }));
    Ok(roles)
}

/// `$filter=roleName eq 'Reader'` narrows to one role; `type eq 'CustomRole'` to custom ones.
pub(crate) async fn list_definitions(app: &AppState, ctx: &RequestContext, scope: &str) -> Result<Response, ApiError> {
    let filter = ctx.query("$filter").unwrap_or_default().to_string();
    let name = quoted_after(&filter, "roleName eq");
    let custom_only = quoted_after(&filter, "type eq").is_some_and(|t| t.eq_ignore_ascii_case("CustomRole"));
    let value = roles_seen_from(app, scope)
        .await?
        .iter()
        .filter(|role| name.as_ref().is_none_or(|n| role.name.eq_ignore_ascii_case(n)))
        .filter(|role| !custom_only || role.custom)
        .map(|role| definition_resource(scope, role))
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

pub(crate) async fn get_definition(
    app: &AppState,
    caller: &Caller,
    scope: &str,
    id: &str,
) -> Result<Response, ApiError> {
    let role = role_named(app, id).await?.ok_or_else(|| definition_not_found(id))?;
    require_at_stored_scopes(caller, "Microsoft.Authorization/roleDefinitions/read", &role)?;
    Ok(json(StatusCode::OK, &definition_resource(scope, &role)))
}

/// A custom role belongs to the scopes it is assignable at, not to the scope a request's URL
/// names: reading, replacing or deleting it needs `action` at every one of the *stored* role's
/// assignable scopes (built-in roles are everyone's to read).
fn require_at_stored_scopes(caller: &Caller, action: &str, stored: &RoleDefinition) -> Result<(), ApiError> {
    if !stored.custom {
        return Ok(());
    }
    stored.assignable_scopes.iter().try_for_each(|scope| caller.require(action, scope))
}

fn definition_not_found(id: &str) -> ApiError {
    Refusal::DefinitionNotFound(id.to_string()).into()
}

/// `PUT {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`: creates or replaces a
/// custom role. The caller needs `roleDefinitions/write` on every assignable scope, and the URL's
/// scope must be one of them (az uses the first).
pub(crate) async fn put_definition(
    app: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    scope: &str,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if uuid::Uuid::try_parse(id).is_err() || rbac::role_by_id(id).is_some() {
        return Err(Refusal::InvalidDefinitionId(id.to_string()).into());
    }
    let body: serde_json::Value = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let role = custom_roles::parse(id, &body).map_err(|e| ApiError::invalid(e.property, e.message))?;
    for assignable in &role.assignable_scopes {
        let valid = matches!(
            path::parse(assignable).map(|p| p.route),
            Some(Ok(Route::Subscription(_) | Route::ResourceGroup(_) | Route::Cluster(_)))
        );
        if !valid {
            return Err(ApiError::invalid(
                "properties.assignableScopes",
                format!("'{assignable}' is not a subscription, resource group or managed cluster id."),
            ));
        }
        caller.require("Microsoft.Authorization/roleDefinitions/write", assignable)?;
    }
    if !role.assignable_scopes.iter().any(|s| s.eq_ignore_ascii_case(scope.trim_end_matches('/'))) {
        return Err(ApiError::invalid(
            "properties.assignableScopes",
            format!("The request's scope '{scope}' must be one of the role's assignableScopes."),
        ));
    }
    if let Some(stored) = custom_roles::find(app.store.as_ref(), &role.id).await? {
        // Replacing a role is writing it where it was assignable too, and a role already in use
        // is widened for everyone it is assigned to: only someone who could have made those
        // assignments may change what they grant.
        require_at_stored_scopes(caller, "Microsoft.Authorization/roleDefinitions/write", &stored)?;
        for assignment in
            app.store.identity().list_role_assignments().await?.iter().filter(|a| a.role_definition_id == stored.id)
        {
            caller.require("Microsoft.Authorization/roleAssignments/write", &assignment.scope)?;
        }
    }
    let others = custom_roles::all(app.store.as_ref()).await?;
    if let Some(twin) = others.iter().find(|r| r.name.eq_ignore_ascii_case(&role.name) && r.id != role.id) {
        return Err(Refusal::DefinitionNameTaken { name: role.name.clone(), id: twin.id.clone() }.into());
    }
    let now = now_millis();
    let record = DocumentRecord {
        kind: DocumentKind::RoleDefinition,
        scope: custom_roles::STORE_SCOPE.to_string(),
        name: role.id.clone(),
        document: custom_roles::to_document(&role),
        created_at: now,
        updated_at: now,
    };
    let put = app.store.documents().put_document(record).await?;
    tracing::info!(role = %role.name, id = %role.id, principal = caller.claims.app_id(), created = put.created, "custom role written");
    Ok(json(StatusCode::CREATED, &definition_resource(scope, &role)))
}

/// `DELETE …/roleDefinitions/{guid}`: 200 with the deleted role, 204 when there was none, 409
/// while assignments still use it.
pub(crate) async fn delete_definition(
    app: &AppState,
    caller: &Caller,
    scope: &str,
    id: &str,
) -> Result<Response, ApiError> {
    if rbac::role_by_id(id).is_some() {
        return Err(Refusal::BuiltInRole(id.to_string()).into());
    }
    let Some(role) = custom_roles::find(app.store.as_ref(), id).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    require_at_stored_scopes(caller, "Microsoft.Authorization/roleDefinitions/delete", &role)?;
    let in_use = app
        .store
        .identity()
        .list_role_assignments()
        .await?
        .into_iter()
        .filter(|a| a.role_definition_id == role.id)
        .count();
    if in_use > 0 {
        return Err(Refusal::DefinitionInUse { role: role.name.clone(), assignments: in_use }.into());
    }
    app.store.documents().delete_document(DocumentKind::RoleDefinition, custom_roles::STORE_SCOPE, &role.id).await?;
    Ok(json(StatusCode::OK, &definition_resource(scope, &role)))
}

/// The single-quoted value after `key` in an OData filter, e.g. `roleName eq 'Reader'`.
fn quoted_after(filter: &str, key: &str) -> Option<String> {
    let at = filter.to_ascii_lowercase().find(&key.to_ascii_lowercase())? + key.len();
    let rest = filter[at..].trim_start();
    let rest = rest.strip_prefix('\'')?;
    Some(rest[..rest.find('\'')?].to_string())
}

/// An assignment as the wire shows it from `viewer`.
fn assignment_resource(record: &RoleAssignmentRecord, viewer: &str) -> RoleAssignment {
    let fields = AssignmentFields {
        name: &record.name,
        scope: &record.scope,
        role_definition_id: &record.role_definition_id,
        principal_id: &record.principal_id,
        principal_type: &record.principal_type,
        created_at: record.created_at,
    };
    RoleAssignment::seen_from(fields, viewer)
}

fn definition_resource(scope: &str, role: &RoleDefinition) -> RoleDefinitionResource {
    RoleDefinitionResource::new(
        scope,
        RoleDefinitionFields {
            id: &role.id,
            role_name: &role.name,
            description: &role.description,
            custom: role.custom,
            actions: &role.actions,
            not_actions: &role.not_actions,
            assignable_scopes: &role.assignable_scopes,
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn odata_filters_are_read() {
        assert_eq!(super::quoted_after("roleName eq 'Reader'", "roleName eq").as_deref(), Some("Reader"));
        assert_eq!(super::quoted_after("atScope() and assignedTo('abc')", "assignedTo(").as_deref(), Some("abc"));
        assert_eq!(super::quoted_after("atScope()", "principalId eq"), None);
    }
}
