//! Service principals and their role assignments: who may sign in, and what each may do where.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use super::rows::Columns;
use super::sql::Sql;
use super::{Put, StoreError, StoreResult};

/// A service principal; the secret itself is never stored.
#[derive(Debug, Clone)]
pub struct PrincipalRecord {
    pub app_id: String,
    pub object_id: String,
    pub display_name: String,
    pub secret_salt: Vec<u8>,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
}

/// `(principal, role, scope)`, as Microsoft.Authorization/roleAssignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignmentRecord {
    /// The assignment's name: a GUID chosen by the client.
    pub name: String,
    /// The scope as given (`/`, a subscription, a group or a resource).
    pub scope: String,
    /// The role definition's GUID.
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub created_at: i64,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn create_principal(&self, principal: PrincipalRecord) -> StoreResult<()>;
    async fn principal_by_app_id(&self, app_id: &str) -> StoreResult<Option<PrincipalRecord>>;
    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>>;
    /// Deletes a principal and its role assignments; false when it did not exist.
    async fn delete_principal(&self, app_id: &str) -> StoreResult<bool>;

    /// Creates an assignment, or returns the existing one of that name unchanged (`created: false`).
    async fn put_role_assignment(&self, assignment: RoleAssignmentRecord) -> StoreResult<Put<RoleAssignmentRecord>>;
    async fn get_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>>;
    async fn delete_role_assignment(&self, name: &str) -> StoreResult<Option<RoleAssignmentRecord>>;
    async fn list_role_assignments(&self) -> StoreResult<Vec<RoleAssignmentRecord>>;
    async fn role_assignments_of(&self, principal_id: &str) -> StoreResult<Arc<[RoleAssignmentRecord]>>;
}

/// The columns [`principal`] reads (a macro, so statements can `concat!` it).
macro_rules! principal_columns {
    () => {
        "app_id, object_id, display_name, secret_salt, secret_hash, created_at"
    };
}

fn principal(r: &impl Columns) -> Result<PrincipalRecord, StoreError> {
    Ok(PrincipalRecord {
        app_id: r.text("app_id")?,
        object_id: r.text("object_id")?,
        display_name: r.text("display_name")?,
        secret_salt: r.bytes("secret_salt")?,
        secret_hash: r.bytes("secret_hash")?,
        created_at: r.int("created_at")?,
    })
}

/// The columns [`assignment`] reads.
macro_rules! assignment_columns {
    () => {
        "name, scope, role_definition_id, principal_id, principal_type, created_at"
    };
}

fn assignment(r: &impl Columns) -> Result<RoleAssignmentRecord, StoreError> {
    Ok(RoleAssignmentRecord {
        name: r.text("name")?,
        scope: r.text("scope")?,
        role_definition_id: r.text("role_definition_id")?,
        principal_id: r.text("principal_id")?,
        principal_type: r.text("principal_type")?,
        created_at: r.int("created_at")?,
    })
}

static INSERT_PRINCIPAL: Sql =
    Sql::new(concat!("INSERT INTO principals (", principal_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6)"));
static PRINCIPAL_BY_APP_ID: Sql =
    Sql::new(concat!("SELECT ", principal_columns!(), " FROM principals WHERE app_id = $1"));
static PRINCIPALS: Sql =
    Sql::new(concat!("SELECT ", principal_columns!(), " FROM principals ORDER BY created_at, app_id"));
static DELETE_PRINCIPALS_ASSIGNMENTS: Sql =
    Sql::new("DELETE FROM role_assignments WHERE principal_id IN (SELECT object_id FROM principals WHERE app_id = $1)");
static DELETE_PRINCIPAL: Sql = Sql::new("DELETE FROM principals WHERE app_id = $1");
/// The first write of a name wins: a PUT of an existing assignment changes nothing.
static INSERT_ASSIGNMENT: Sql = Sql::new(concat!(
    "INSERT INTO role_assignments (",
    assignment_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING"
));
static ASSIGNMENT_NAMED: Sql =
    Sql::new(concat!("SELECT ", assignment_columns!(), " FROM role_assignments WHERE name = $1"));
static DELETE_ASSIGNMENT: Sql =
    Sql::new(concat!("DELETE FROM role_assignments WHERE name = $1 RETURNING ", assignment_columns!()));
/// Unordered, as is [`ASSIGNMENTS_OF`]: [`in_creation_order`] sorts the few rows (on SQLite, an
/// `ORDER BY` after an equality on a bound value re-prepares the statement at every call).
static ASSIGNMENTS: Sql = Sql::new(concat!("SELECT ", assignment_columns!(), " FROM role_assignments"));
static ASSIGNMENTS_OF: Sql =
    Sql::new(concat!("SELECT ", assignment_columns!(), " FROM role_assignments WHERE principal_id = $1"));

/// Assignments as they are listed: oldest first, then by name.
fn in_creation_order(mut assignments: Vec<RoleAssignmentRecord>) -> Vec<RoleAssignmentRecord> {
    assignments.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    assignments
}
