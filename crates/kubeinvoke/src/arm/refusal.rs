//! Refusals particular to one resource provider, each with its status, code and message in one
//! place (Microsoft.Authorization's codes, the saved commands' and event subscriptions'), and
//! converted into [`ApiError`](super::error::ApiError) with `?`.

use axum::http::StatusCode;

/// Microsoft.Authorization: role assignments and custom role definitions.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizationRefusal {
    #[error("The role assignment ID '{0}' is not valid. The role assignment ID must be a GUID.")]
    InvalidAssignmentId(String),
    #[error("The role assignment '{0}' is not found.")]
    AssignmentNotFound(String),
    /// An assignment names a role that does not exist (a bad request, not a missing resource).
    #[error("The specified role definition with ID '{0}' does not exist.")]
    UnknownRole(String),
    #[error("The role '{role}' cannot be assigned at scope '{scope}': its assignableScopes are {assignable}.")]
    NotAssignableHere { role: String, scope: String, assignable: String },
    #[error("The principal ID '{0}' is not valid. It must be an object id (a GUID).")]
    InvalidPrincipalId(String),
    #[error("The role assignment already exists. The ID of the existing role assignment is {0}.")]
    AssignmentExists(String),
    #[error("Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")]
    AssignmentUpdate,
    #[error("The specified role definition with ID '{0}' does not exist.")]
    DefinitionNotFound(String),
    #[error("The role definition ID '{0}' is not valid: it must be a new GUID, not a built-in role's.")]
    InvalidDefinitionId(String),
    #[error("A custom role named '{name}' exists already (id {id}).")]
    DefinitionNameTaken { name: String, id: String },
    #[error("The role '{role}' is used by {assignments} role assignment(s); delete them first.")]
    DefinitionInUse { role: String, assignments: usize },
    #[error("'{0}' is a built-in role.")]
    BuiltInRole(String),
}

impl AuthorizationRefusal {
    pub fn status(&self) -> StatusCode {
        use AuthorizationRefusal::*;
        match self {
            InvalidAssignmentId(_)
            | UnknownRole(_)
            | InvalidPrincipalId(_)
            | InvalidDefinitionId(_)
            | BuiltInRole(_) => StatusCode::BAD_REQUEST,
            NotAssignableHere { .. } => StatusCode::FORBIDDEN,
            AssignmentNotFound(_) | DefinitionNotFound(_) => StatusCode::NOT_FOUND,
            AssignmentExists(_) | AssignmentUpdate | DefinitionNameTaken { .. } | DefinitionInUse { .. } => {
                StatusCode::CONFLICT
            }
        }
    }

    pub fn code(&self) -> &'static str {
        use AuthorizationRefusal::*;
        match self {
            InvalidAssignmentId(_) => "InvalidRoleAssignmentId",
            AssignmentNotFound(_) => "RoleAssignmentNotFound",
            UnknownRole(_) | DefinitionNotFound(_) => "RoleDefinitionDoesNotExist",
            NotAssignableHere { .. } => "InvalidCreateRoleAssignmentRequest",
            InvalidPrincipalId(_) => "InvalidPrincipalId",
            AssignmentExists(_) => "RoleAssignmentExists",
            AssignmentUpdate => "RoleAssignmentUpdateNotPermitted",
            InvalidDefinitionId(_) => "InvalidRoleDefinitionId",
            DefinitionNameTaken { .. } => "RoleDefinitionWithSameNameExists",
            DefinitionInUse { .. } => "RoleDefinitionHasAssignments",
            BuiltInRole(_) => "CannotDeleteBuiltInRole",
        }
    }
}

/// A resource of this server's extensions that is not there.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionRefusal {
    #[error("The saved command '{0}' was not found in this scope.")]
    SavedCommand(String),
    #[error("The event subscription '{0}' was not found in this scope.")]
    EventSubscription(String),
    #[error("The run command '{0}' was not found on this managed cluster.")]
    RunCommand(String),
}

impl ExtensionRefusal {
    pub fn status(&self) -> StatusCode {
        StatusCode::NOT_FOUND
    }

    pub fn code(&self) -> &'static str {
        match self {
            ExtensionRefusal::SavedCommand(_) => "SavedCommandNotFound",
            ExtensionRefusal::EventSubscription(_) | ExtensionRefusal::RunCommand(_) => "ResourceNotFound",
        }
    }
}

/// A decision on a held command that cannot be taken (docs/contract.md, four eyes).
#[derive(Debug, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error("The command '{0}' was not held for approval.")]
    NotHeld(String),
    #[error("The command '{id}' is {state}: it no longer waits for approval.")]
    NotPending { id: String, state: &'static str },
    #[error("The command '{0}' was not approved in time: it ended Failed (ApprovalExpired) and never ran.")]
    Expired(String),
    #[error("The requester of command '{0}' cannot approve it: another principal must (two-person rule).")]
    OwnCommand(String),
    #[error("You approved command '{0}' already; an approver counts once, and it needs another principal's approval.")]
    AlreadyApproved(String),
}

impl ApprovalRefusal {
    pub fn status(&self) -> StatusCode {
        match self {
            ApprovalRefusal::NotHeld(_) => StatusCode::NOT_FOUND,
            ApprovalRefusal::OwnCommand(_) => StatusCode::FORBIDDEN,
            ApprovalRefusal::NotPending { .. } | ApprovalRefusal::Expired(_) | ApprovalRefusal::AlreadyApproved(_) => {
                StatusCode::CONFLICT
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApprovalRefusal::NotHeld(_) => "ApprovalNotFound",
            ApprovalRefusal::NotPending { .. } => "CommandNotPendingApproval",
            ApprovalRefusal::Expired(_) => "ApprovalExpired",
            ApprovalRefusal::OwnCommand(_) => "SelfApprovalNotAllowed",
            ApprovalRefusal::AlreadyApproved(_) => "ApprovalAlreadyGiven",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_keeps_the_status_of_its_situation() {
        // Assigning an unknown role is a bad request; reading one is a missing resource (ARM).
        let assign = AuthorizationRefusal::UnknownRole("r".into());
        let read = AuthorizationRefusal::DefinitionNotFound("r".into());
        assert_eq!((assign.code(), assign.status()), ("RoleDefinitionDoesNotExist", StatusCode::BAD_REQUEST));
        assert_eq!((read.code(), read.status()), ("RoleDefinitionDoesNotExist", StatusCode::NOT_FOUND));
        assert_eq!(assign.to_string(), read.to_string());
    }
}
