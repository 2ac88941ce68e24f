//! Microsoft.Authorization: role assignments (create, read, delete, list) and the built-in role
//! definitions, at any scope, as `az role assignment` and `az role definition` use them.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::arm::ApiError;
use crate::arm::wire::{AssignmentFields, ListResult, RoleAssignment, RoleAssignmentRequest, RoleDefinitionResource};
use crate::identity::rbac::{self, BUILT_IN_ROLES, BuiltInRole};
use crate::server::AppState;
use crate::server::request::{RequestContext, json, json_body};
use crate::store::RoleAssignmentRecord;
use crate::time::now_millis;

fn refused(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError::Refused { status, code, message }
}

fn not_found(name: &str) -> ApiError {
    refused(StatusCode::NOT_FOUND, "RoleAssignmentNotFound", format!("The role assignment '{name}' is not found."))
}

pub async fn put_assignment(
    app: &AppState,
    ctx: &RequestContext,
    scope: &str,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if uuid::Uuid::try_parse(name).is_err() {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
        ));
    }
    let request: RoleAssignmentRequest = json_body(body, &ctx.headers, app.config.max_body_bytes).await?;
    let wanted = request.properties;
    let role = rbac::resolve_role(&wanted.role_definition_id).ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{}' does not exist.", wanted.role_definition_id),
        )
    })?;
    let principal_id = wanted.principal_id.to_lowercase();
    // Principals of trusted external issuers are not in our directory: any object id is accepted.
    if uuid::Uuid::try_parse(&principal_id).is_err() {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "InvalidPrincipalId",
            format!("The principal ID '{principal_id}' is not valid. It must be an object id (a GUID)."),
        ));
    }
    let existing = app.store.list_role_assignments().await?;
    let same_grant = |a: &&RoleAssignmentRecord| {
        a.scope.eq_ignore_ascii_case(scope) && a.role_definition_id == role.id && a.principal_id == principal_id
    };
    if let Some(twin) = existing.iter().find(same_grant).filter(|a| a.name != name) {
        return Err(refused(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            format!("The role assignment already exists. The ID of the existing role assignment is {}.", twin.name),
        ));
    }
    let record = RoleAssignmentRecord {
        name: name.to_string(),
        scope: scope.to_string(),
        role_definition_id: role.id.to_string(),
        principal_id,
        principal_type: wanted.principal_type.unwrap_or_else(|| "ServicePrincipal".into()),
        created_at: now_millis(),
    };
    let put = app.store.put_role_assignment(record.clone()).await?;
    let unchanged = put.value.scope.eq_ignore_ascii_case(scope)
        && put.value.role_definition_id == record.role_definition_id
        && put.value.principal_id == record.principal_id;
    if !put.created && !unchanged {
        return Err(refused(
            StatusCode::CONFLICT,
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.".into(),
        ));
    }
    Ok(json(StatusCode::CREATED, &assignment_resource(&put.value, &put.value.scope)))
}

pub async fn get_assignment(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    let found = app.store.get_role_assignment(name).await?.filter(|a| a.scope.eq_ignore_ascii_case(scope));
    let found = found.ok_or_else(|| not_found(name))?;
    Ok(json(StatusCode::OK, &assignment_resource(&found, &found.scope)))
}

pub async fn delete_assignment(app: &AppState, scope: &str, name: &str) -> Result<Response, ApiError> {
    match app.store.get_role_assignment(name).await?.filter(|a| a.scope.eq_ignore_ascii_case(scope)) {
        Some(found) => {
            app.store.delete_role_assignment(name).await?;
            Ok(json(StatusCode::OK, &assignment_resource(&found, &found.scope)))
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Assignments that apply at `scope` (at or above it) and, without `atScope()`, those below it.
/// `$filter=principalId eq '…'` or `assignedTo('…')` narrows to one principal.
pub async fn list_assignments(app: &AppState, ctx: &RequestContext, scope: &str) -> Result<Response, ApiError> {
    let filter = ctx.query("$filter").unwrap_or_default().to_string();
    let principal = quoted_after(&filter, "principalId eq").or_else(|| quoted_after(&filter, "assignedTo("));
    let at_scope_only = filter.contains("atScope()");
    let value = app
        .store
        .list_role_assignments()
        .await?
        .iter()
        .filter(|a| rbac::scope_covers(&a.scope, scope) || (!at_scope_only && rbac::scope_covers(scope, &a.scope)))
        .filter(|a| principal.as_ref().is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p)))
        .map(|a| assignment_resource(a, scope))
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

/// `$filter=roleName eq 'Reader'` narrows to one role.
pub async fn list_definitions(ctx: &RequestContext, scope: &str) -> Result<Response, ApiError> {
    let filter = ctx.query("$filter").unwrap_or_default().to_string();
    let name = quoted_after(&filter, "roleName eq");
    let value = BUILT_IN_ROLES
        .iter()
        .filter(|role| name.as_ref().is_none_or(|n| role.name.eq_ignore_ascii_case(n)))
        .map(|role| definition_resource(scope, role))
        .collect();
    Ok(json(StatusCode::OK, &ListResult { value, next_link: None }))
}

pub async fn get_definition(scope: &str, id: &str) -> Result<Response, ApiError> {
    let role = rbac::role_by_id(id).ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{id}' does not exist."),
        )
    })?;
    Ok(json(StatusCode::OK, &definition_resource(scope, role)))
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

fn definition_resource(scope: &str, role: &BuiltInRole) -> RoleDefinitionResource {
    RoleDefinitionResource::built_in(scope, role.id, role.name, role.description, role.actions, role.not_actions)
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
