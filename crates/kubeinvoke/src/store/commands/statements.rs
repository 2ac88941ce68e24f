//! The commands' SQL, with every column list in one place. Statements that are the same in both
//! dialects are [`Sql`]; the two claims differ (PostgreSQL locks the row it takes, SQLite's one
//! writer needs no lock) and are written once each here.

use crate::store::sql::Sql;

/// The columns of [`super::record`].
macro_rules! record_columns {
    () => {
        "id, state, submitted_at, started_at, finished_at, exit_code, logs, reason, expires_at"
    };
}

/// The command's own columns [`super::claimed`] reads.
macro_rules! claim_columns {
    () => {
        "id, command, context, cluster_token, submitted_by, environment, secret_names, timeout_ms, saved_command, run_as"
    };
}

/// What a finished command clears: the context and the cluster token are only needed to run.
macro_rules! drop_run_inputs {
    () => {
        "context = NULL, cluster_token = NULL"
    };
}

/// A new command's row: `$3` its state, `$13`/`$14` the owner and lease, `$15` when it started,
/// `$16`–`$18` its hold (approvals needed, deadline, requester) when it waits for approval, `$19`
/// the identity it runs as.
macro_rules! insert_command {
    () => {
        "INSERT INTO commands (id, cluster_uid, state, command, context, cluster_token, submitted_at, submitted_by,
                               environment, secret_names, timeout_ms, saved_command, owner, lease_until, started_at,
                               approvals_needed, approval_deadline, requester_oid, run_as)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    };
}

pub(super) static INSERT: Sql = Sql::new(insert_command!());
/// The insert that also announces the command to every replica listening (`$20` the channel):
/// the row and its announcement commit together.
pub(super) const INSERT_AND_NOTIFY_POSTGRES: &str =
    concat!("WITH inserted AS (", insert_command!(), " RETURNING id) SELECT pg_notify($20, id) FROM inserted");
/// The insert of a command stored `Running`, returning what running it needs from its cluster in
/// the same statement.
pub(super) const INSERT_RUNNING_POSTGRES: &str = concat!(
    "WITH inserted AS (",
    insert_command!(),
    " RETURNING cluster_uid)
     SELECT c.kubeconfig, c.document FROM inserted LEFT JOIN clusters c ON c.uid = inserted.cluster_uid"
);
/// What running a command of this cluster needs from it: its kubeconfig and settings document.
pub(super) static RUN_INPUTS: Sql = Sql::new("SELECT kubeconfig, document FROM clusters WHERE uid = $1");

pub(super) static GET: Sql = Sql::new(concat!(
    "SELECT ",
    record_columns!(),
    " FROM commands WHERE id = $1 AND cluster_uid = $2 AND (expires_at IS NULL OR expires_at > $3)"
));

/// Takes the oldest `Accepted` command not pinned to another replica (`$2` the claimer).
pub(super) const CLAIM_SQLITE: &str = concat!(
    "UPDATE commands SET state = 'Running', started_at = ?1, owner = ?2, lease_until = ?3
     WHERE seq = (SELECT seq FROM commands WHERE state = 'Accepted' AND (owner IS NULL OR owner = ?2)
                  ORDER BY seq LIMIT 1)
     RETURNING cluster_uid, ",
    claim_columns!()
);
/// As [`CLAIM_SQLITE`], skipping rows other replicas are claiming, and reading the cluster's
/// kubeconfig and document in the same statement.
pub(super) const CLAIM_POSTGRES: &str = concat!(
    "WITH next AS (
       SELECT seq FROM commands WHERE state = 'Accepted' AND (owner IS NULL OR owner = $2)
       ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
     UPDATE commands c SET state = 'Running', started_at = $1, owner = $2, lease_until = $3
     FROM next WHERE c.seq = next.seq AND c.state = 'Accepted'
     RETURNING (SELECT kubeconfig FROM clusters WHERE uid = c.cluster_uid) AS kubeconfig,
               (SELECT document FROM clusters WHERE uid = c.cluster_uid) AS document, ",
    claim_columns!()
);

pub(super) static RENEW: Sql = Sql::new(
    "UPDATE commands SET lease_until = $2 WHERE state IN ('PendingApproval', 'Accepted', 'Running') AND owner = $1
     RETURNING id, cancel_requested_by",
);
/// `Running` (and pinned waiting) commands whose lease ran out end `Failed` (`$2` the reason).
pub(super) static END_LOST: Sql = Sql::new(concat!(
    "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3,
            logs = COALESCE(logs, ''), ",
    drop_run_inputs!(),
    " WHERE (state = 'Running' OR (state IN ('PendingApproval', 'Accepted') AND owner IS NOT NULL)) AND lease_until < $1
     RETURNING id"
));
/// A replica's late word on a command another replica called lost while it ran it: only its
/// owner's, only on a `WorkerLost` row, and the state stays as it is.
pub(super) static REPORT_AFTER_LOST: Sql = Sql::new(
    "UPDATE commands SET reason = $3, logs = $4
     WHERE id = $1 AND owner = $2 AND state = 'Failed' AND reason = 'WorkerLost'",
);
pub(super) static REQUEST_CANCEL: Sql = Sql::new(
    "UPDATE commands SET cancel_requested_by = COALESCE(cancel_requested_by, $3)
     WHERE id = $1 AND cluster_uid = $2 AND state = 'Running'",
);
pub(super) static FINISH: Sql = Sql::new(concat!(
    "UPDATE commands SET state = $2, finished_at = $3, exit_code = $4, logs = $5, reason = $6, expires_at = $7, ",
    drop_run_inputs!(),
    " WHERE id = $1 AND state = 'Running'"
));

macro_rules! queued_state {
    () => {
        "SELECT state FROM commands WHERE id = $1 AND cluster_uid = $2 AND (expires_at IS NULL OR expires_at > $3)"
    };
}
pub(super) static QUEUED_STATE: Sql = Sql::new(queued_state!());
/// As [`QUEUED_STATE`], locking the row: a claim cannot take it between the check and the update.
pub(super) const QUEUED_STATE_FOR_UPDATE_POSTGRES: &str = concat!(queued_state!(), " FOR UPDATE");
pub(super) static CANCEL_QUEUED: Sql = Sql::new(concat!(
    "UPDATE commands SET state = 'Canceled', finished_at = $2, reason = $3, logs = '', expires_at = $4, ",
    drop_run_inputs!(),
    " WHERE id = $1 AND state IN ('PendingApproval', 'Accepted')"
));

/// The history: a record without its logs, then what was asked.
pub(super) static HISTORY: Sql = Sql::new(
    "SELECT id, state, submitted_at, started_at, finished_at, exit_code, CAST(NULL AS TEXT) AS logs, reason,
            expires_at, seq, command, submitted_by, environment, secret_names, saved_command, run_as
     FROM commands WHERE cluster_uid = $1 AND seq < $2 AND (expires_at IS NULL OR expires_at > $3)
     ORDER BY seq DESC LIMIT $4",
);

/// A restarted replica's `Running` commands (and those of no owner) end `Failed` (`$2` the reason).
pub(super) static INTERRUPT_RUNNING: Sql = Sql::new(concat!(
    "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3,
            logs = COALESCE(logs, ''), ",
    drop_run_inputs!(),
    " WHERE state = 'Running' AND (owner = $4 OR owner IS NULL)"
));
/// A restarted replica's pinned waiting commands end `Failed`: their secrets were in its memory.
pub(super) static INTERRUPT_PINNED: Sql = Sql::new(concat!(
    "UPDATE commands SET state = 'Failed', finished_at = $1, reason = $2, expires_at = $3, logs = '', ",
    drop_run_inputs!(),
    " WHERE state IN ('PendingApproval', 'Accepted') AND owner = $4"
));
pub(super) static PURGE: Sql =
    Sql::new("DELETE FROM commands WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING id");
pub(super) static COUNT_ACCEPTED: Sql = Sql::new("SELECT COUNT(*) AS accepted FROM commands WHERE state = 'Accepted'");
pub(super) static RUNNING_IDS: Sql = Sql::new("SELECT id FROM commands WHERE state = 'Running'");
