//! Workspace objects in the store: loading a workspace for the engine, and applying one
//! operation to it, idempotently and in one transaction each. This is what the `local`
//! target executes. Each user and group is kept as its SCIM document; the columns the
//! engine and the filters read are derived from the document on every write.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{BeginWrite, Pool, Store, StoreError, now_millis, on_pool};
use crate::model::{UserAttributes, WorkspaceGroup, WorkspaceState, WorkspaceUser};
use crate::reconcile::plan::{Operation, PushedObject};
use crate::render;
use crate::scim_wire;

type UserRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<i64>,
);

fn user_from_row(row: UserRow) -> WorkspaceUser {
    let (
        id,
        okta_id,
        external_id,
        user_name,
        given_name,
        family_name,
        display_name,
        email,
        active,
        pushed_at,
    ) = row;
    WorkspaceUser {
        id,
        okta_id,
        external_id,
        attributes: UserAttributes {
            user_name,
            given_name,
            family_name,
            display_name: display_name.unwrap_or_default(),
            email,
        },
        active,
        pushed_at,
    }
}

const MANAGED_USER: &str =
    "SELECT id, doc FROM workspace_users WHERE workspace_id = $1 AND okta_id = $2";
const PUSHED_GROUP: &str =
    "SELECT id, doc FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2";

fn parse_doc(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Invalid(format!("stored document is not JSON: {e}")))
}

/// Rows (or ids) per statement when writing or resolving group members (3 parameters a
/// row: far below either backend's limit).
const MEMBER_ROWS: usize = 1000;

/// A user row to write: the document and the engine-side fields that are not in it.
struct UserWrite<'a> {
    id: &'a str,
    okta_id: Option<&'a str>,
    doc: &'a Value,
    pushed: Pushed,
}

/// A group row to write.
struct GroupWrite<'a> {
    id: &'a str,
    okta_group_id: Option<&'a str>,
    doc: &'a Value,
    pushed: Pushed,
}

/// Whether a row write is a push (a SCIM client's write, which a pull whose read predates
/// it must not revert) and when the row counts as modified.
#[derive(Clone, Copy)]
enum Pushed {
    /// The engine's write from Okta: modified at the transaction's time.
    No,
    /// Pushed, modified at the transaction's time.
    Now,
    /// Pushed by a SCIM request that arrived at this time (ms): the row's modification
    /// time, as the request's answer rendered it without reading the row back.
    ReceivedAt(i64),
}

impl Pushed {
    /// The row's `pushed_at`: when the write happened, which orders it against reads.
    fn pushed_at(self, now: i64) -> Option<i64> {
        match self {
            Pushed::No => None,
            Pushed::Now | Pushed::ReceivedAt(_) => Some(now),
        }
    }

    /// The row's `updated_at` (and `created_at`, for a new row).
    fn modified_at(self, now: i64) -> i64 {
        match self {
            Pushed::ReceivedAt(at) => at,
            Pushed::No | Pushed::Now => now,
        }
    }
}

/// Writes of groups linked to Okta, as the engine makes them: (Okta group id, id, document).
fn linked_writes<'a>(rows: &'a [(&'a str, String, Value)]) -> Vec<GroupWrite<'a>> {
    rows.iter()
        .map(|(okta_group_id, id, doc)| GroupWrite {
            id,
            okta_group_id: Some(okta_group_id),
            doc,
            pushed: Pushed::No,
        })
        .collect()
}

/// The id and document of one row found by `$sql` (workspace id, key), or NotFound.
macro_rules! find_doc {
    ($tx:expr, $sql:expr, $ws:expr, $key:expr, $missing:expr) => {{
        let row: Option<(String, String)> = sqlx::query_as($sql)
            .bind($ws)
            .bind($key)
            .fetch_optional(&mut *$tx)
            .await?;
        match row {
            Some((id, doc)) => Ok::<(String, Value), StoreError>((id, parse_doc(&doc)?)),
            None => Err(StoreError::NotFound($missing)),
        }
    }};
}

/// Checks a SCIM write against what is stored: a create must be new; an update must find
/// its object (at the expected version, when given). Evaluates to the Okta anchor to keep.
macro_rules! check_push {
    ($tx:expr, $ws:expr, $sql:expr, $p:expr) => {{
        let p: &PushedObject = $p;
        let row: Option<(Option<String>, i64)> = sqlx::query_as($sql)
            .bind($ws)
            .bind(p.workspace_id.as_str())
            .fetch_optional(&mut *$tx)
            .await?;
        match (row, p.create) {
            (Some(_), true) => Err(StoreError::Conflict(format!(
                "{} already exists",
                p.workspace_id
            ))),
            (None, true) => Ok(None),
            (None, false) => Err(StoreError::NotFound(format!(
                "no object {}",
                p.workspace_id
            ))),
            (Some((anchor, version)), false) => match p.expected_version {
                Some(expected) if expected != version => Err(StoreError::VersionMismatch(format!(
                    "{} is at version {version}, not {expected}",
                    p.workspace_id
                ))),
                _ => Ok(anchor),
            },
        }
    }};
}

/// Inserts or updates users (by id), all in one statement, with columns derived from
/// their documents.
macro_rules! write_users {
    ($tx:expr, $ws:expr, $writes:expr, $now:expr) => {{
        let writes: &[UserWrite<'_>] = $writes;
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO workspace_users (workspace_id, id, okta_id, external_id, user_name, user_name_lower, \
             given_name, family_name, display_name, email, active, doc, pushed_at, created_at, updated_at) ",
        );
        insert.push_values(writes, |mut row, w| {
            let (attributes, active, external_id) = scim_wire::user_columns(w.doc);
            let user_name_lower = attributes.user_name.to_lowercase();
            let display_name = Some(attributes.display_name).filter(|d| !d.is_empty());
            row.push_bind($ws)
                .push_bind(w.id)
                .push_bind(w.okta_id)
                .push_bind(external_id)
                .push_bind(attributes.user_name)
                .push_bind(user_name_lower)
                .push_bind(attributes.given_name)
                .push_bind(attributes.family_name)
                .push_bind(display_name)
                .push_bind(attributes.email)
                .push_bind(active)
                .push_bind(w.doc.to_string())
                .push_bind(w.pushed.pushed_at($now))
                .push_bind(w.pushed.modified_at($now))
                .push_bind(w.pushed.modified_at($now));
        });
        insert.push(
            " ON CONFLICT (workspace_id, id) DO UPDATE SET okta_id = excluded.okta_id, external_id = excluded.external_id, \
             user_name = excluded.user_name, user_name_lower = excluded.user_name_lower, given_name = excluded.given_name, \
             family_name = excluded.family_name, display_name = excluded.display_name, email = excluded.email, \
             active = excluded.active, doc = excluded.doc, \
             pushed_at = COALESCE(excluded.pushed_at, workspace_users.pushed_at), \
             version = workspace_users.version + 1, updated_at = excluded.updated_at",
        );
        insert.build().execute(&mut *$tx).await.map_err(StoreError::from)
    }};
}

/// Inserts or updates one user (by id) with columns derived from its document.
macro_rules! write_user {
    ($tx:expr, $ws:expr, $w:expr, $now:expr) => {{
        let write: &UserWrite<'_> = $w;
        write_users!($tx, $ws, std::slice::from_ref(write), $now)
    }};
}

/// Creates (or, for an Okta user already anchored here, updates in place) users from Okta:
/// what `CreateUser` does, for many users with one query and one statement, so that a first
/// sync does not pay two round trips per user.
macro_rules! create_users {
    ($tx:ident, $ws:expr, $creates:expr, $now:expr) => {{
        let creates: &[(&str, &UserAttributes)] = $creates;
        let mut select = sqlx::QueryBuilder::new(
            "SELECT okta_id, id, doc FROM workspace_users WHERE workspace_id = ",
        );
        select.push_bind($ws).push(" AND okta_id IN (");
        let mut ids = select.separated(", ");
        for (okta_id, _) in creates {
            ids.push_bind(*okta_id);
        }
        select.push(")");
        let rows: Vec<(String, String, String)> =
            select.build_query_as().fetch_all(&mut *$tx).await?;
        let mut existing: std::collections::HashMap<String, (String, String)> = rows
            .into_iter()
            .map(|(okta_id, id, doc)| (okta_id, (id, doc)))
            .collect();
        let mut rows = Vec::with_capacity(creates.len());
        for (okta_id, attributes) in creates {
            let (id, old) = match existing.remove(*okta_id) {
                Some((id, doc)) => (id, Some(parse_doc(&doc)?)),
                None => (super::new_object_id(), None),
            };
            let doc = scim_wire::merge_user(old.as_ref(), attributes, true, Some(okta_id));
            rows.push((id, doc));
        }
        let writes: Vec<UserWrite<'_>> = rows
            .iter()
            .zip(creates)
            .map(|((id, doc), (okta_id, _))| UserWrite {
                id,
                okta_id: Some(okta_id),
                doc,
                pushed: Pushed::No,
            })
            .collect();
        write_users!($tx, $ws, &writes, $now)?;
    }};
}

/// The workspace ids of Okta users (those managed here), many a query.
macro_rules! resolve_members {
    ($tx:ident, $ws:expr, $okta_ids:expr) => {{
        let okta_ids: &[&str] = $okta_ids;
        let mut found: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for chunk in okta_ids.chunks(MEMBER_ROWS) {
            let mut select = sqlx::QueryBuilder::new(
                "SELECT okta_id, id FROM workspace_users WHERE workspace_id = ",
            );
            select.push_bind($ws).push(" AND okta_id IN (");
            let mut ids = select.separated(", ");
            for okta_id in chunk {
                ids.push_bind(*okta_id);
            }
            select.push(")");
            let rows: Vec<(String, String)> = select.build_query_as().fetch_all(&mut *$tx).await?;
            found.extend(rows);
        }
        found
    }};
}

/// The rows of the groups linked to `$okta_group_ids`: Okta group id → (id, document).
macro_rules! linked_groups {
    ($tx:ident, $ws:expr, $okta_group_ids:expr) => {{
        let mut select = sqlx::QueryBuilder::new(
            "SELECT okta_group_id, id, doc FROM workspace_groups WHERE workspace_id = ",
        );
        select.push_bind($ws).push(" AND okta_group_id IN (");
        let mut ids = select.separated(", ");
        for okta_group_id in $okta_group_ids {
            ids.push_bind(okta_group_id);
        }
        select.push(")");
        let rows: Vec<(String, String, String)> =
            select.build_query_as().fetch_all(&mut *$tx).await?;
        rows.into_iter()
            .map(|(okta_group_id, id, doc)| (okta_group_id, (id, doc)))
            .collect::<std::collections::HashMap<String, (String, String)>>()
    }};
}

/// Creates (or, for an Okta group already linked here, renames in place) groups from Okta:
/// what `CreateGroup` without a group to link does, for many groups in a few statements.
macro_rules! create_groups {
    ($tx:ident, $ws:expr, $creates:expr, $now:expr) => {{
        let creates: &[(&str, &str)] = $creates;
        let mut existing = linked_groups!(
            $tx,
            $ws,
            creates.iter().map(|(okta_group_id, _)| *okta_group_id)
        );
        let mut rows = Vec::with_capacity(creates.len());
        for (okta_group_id, display_name) in creates {
            let (id, old) = match existing.remove(*okta_group_id) {
                Some((id, doc)) => (id, Some(parse_doc(&doc)?)),
                None => (super::new_object_id(), None),
            };
            rows.push((
                *okta_group_id,
                id,
                scim_wire::merge_group(old.as_ref(), display_name),
            ));
        }
        write_groups!($tx, $ws, &linked_writes(&rows), $now)?;
    }};
}

/// Adds members to groups: what `AddMembers` does, for many groups in a few statements.
/// Returns from the enclosing function when a group or a member is missing (the one-by-one
/// replay that follows gives each operation its own outcome, keeping the members found).
macro_rules! add_members {
    ($tx:ident, $ws:expr, $adds:expr, $now:expr) => {{
        let adds: &[(&str, &[String])] = $adds;
        let mut groups = linked_groups!(
            $tx,
            $ws,
            adds.iter().map(|(okta_group_id, _)| *okta_group_id)
        );
        let okta_ids: Vec<&str> = adds
            .iter()
            .flat_map(|(_, members)| members.iter().map(String::as_str))
            .collect();
        let found = resolve_members!($tx, $ws, &okta_ids);
        if let Some(missing) = okta_ids.iter().find(|m| !found.contains_key(**m)) {
            return Err(StoreError::NotFound(format!(
                "members not in the workspace yet: {missing}"
            )));
        }
        let mut rows = Vec::with_capacity(adds.len());
        for (okta_group_id, members) in adds {
            let Some((id, old)) = groups.remove(*okta_group_id) else {
                return Err(StoreError::NotFound(format!(
                    "pushed group {okta_group_id} does not exist"
                )));
            };
            let add: Vec<String> = members
                .iter()
                .filter_map(|m| found.get(m).cloned())
                .collect();
            rows.push((
                *okta_group_id,
                id,
                scim_wire::change_group_members(&parse_doc(&old)?, &add, &[]),
            ));
        }
        write_groups!($tx, $ws, &linked_writes(&rows), $now)?;
    }};
}

/// Inserts or updates groups (by id) and replaces their member rows from their documents,
/// in a few statements however many groups: a first sync writes thousands with their
/// members.
macro_rules! write_groups {
    ($tx:expr, $ws:expr, $writes:expr, $now:expr) => {{
        let writes: &[GroupWrite<'_>] = $writes;
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO workspace_groups (workspace_id, id, okta_group_id, external_id, display_name, doc, pushed_at, created_at, updated_at) ",
        );
        insert.push_values(writes, |mut row, w| {
            let display_name = w.doc.get("displayName").and_then(Value::as_str).unwrap_or_default().to_owned();
            let external_id = w.doc.get("externalId").and_then(Value::as_str).map(str::to_owned);
            row.push_bind($ws)
                .push_bind(w.id)
                .push_bind(w.okta_group_id)
                .push_bind(external_id)
                .push_bind(display_name)
                .push_bind(w.doc.to_string())
                .push_bind(w.pushed.pushed_at($now))
                .push_bind(w.pushed.modified_at($now))
                .push_bind(w.pushed.modified_at($now));
        });
        insert.push(
            " ON CONFLICT (workspace_id, id) DO UPDATE SET okta_group_id = excluded.okta_group_id, \
             external_id = excluded.external_id, display_name = excluded.display_name, doc = excluded.doc, \
             pushed_at = COALESCE(excluded.pushed_at, workspace_groups.pushed_at), \
             version = workspace_groups.version + 1, updated_at = excluded.updated_at",
        );
        insert.build().execute(&mut *$tx).await.map_err(StoreError::from)?;
        let mut delete = sqlx::QueryBuilder::new("DELETE FROM workspace_group_members WHERE workspace_id = ");
        delete.push_bind($ws).push(" AND group_id IN (");
        let mut ids = delete.separated(", ");
        for w in writes {
            ids.push_bind(w.id);
        }
        delete.push(")");
        delete.build().execute(&mut *$tx).await.map_err(StoreError::from)?;
        let members: Vec<(&str, String)> = writes
            .iter()
            .flat_map(|w| scim_wire::group_member_ids(w.doc).into_iter().map(move |m| (w.id, m)))
            .collect();
        // Many rows a statement: a first sync writes groups of thousands of members.
        for chunk in members.chunks(MEMBER_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO workspace_group_members (workspace_id, group_id, user_id) ",
            );
            insert.push_values(chunk, |mut row, (group_id, member)| {
                row.push_bind($ws).push_bind(*group_id).push_bind(member.as_str());
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut *$tx).await.map_err(StoreError::from)?;
        }
        Ok::<(), StoreError>(())
    }};
}

/// Inserts or updates one group (by id) and replaces its member rows from its document.
macro_rules! write_group {
    ($tx:expr, $ws:expr, $w:expr, $now:expr) => {{
        let write: &GroupWrite<'_> = $w;
        write_groups!($tx, $ws, std::slice::from_ref(write), $now)
    }};
}

/// A single journaled write waiting for the SQLite write turn, and where its outcome goes.
pub(super) struct QueuedWrite {
    ws: String,
    cycle_id: Option<i64>,
    operation: Operation,
    detail: String,
    done: tokio::sync::oneshot::Sender<Result<Result<(), StoreError>, StoreError>>,
}

impl QueuedWrite {
    fn entry(&self) -> JournalRow<'_> {
        JournalRow {
            cycle_id: self.cycle_id,
            ws: &self.ws,
            operation: &self.operation,
            detail: &self.detail,
        }
    }
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedWrite")
            .field("ws", &self.ws)
            .field("operation", &self.operation.kind())
            .finish_non_exhaustive()
    }
}

/// One operation's journal entry, written with its final outcome.
struct JournalRow<'a> {
    cycle_id: Option<i64>,
    ws: &'a str,
    operation: &'a Operation,
    detail: &'a str,
}

/// Inserts finished journal entries (error None: applied) in `$tx`, in one statement.
macro_rules! insert_journal_rows {
    ($tx:ident, $rows:expr, $now:expr) => {{
        let rows: &[(JournalRow<'_>, Option<&str>)] = $rows;
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO journal (cycle_id, source, workspace_id, seq, op, okta_id, detail, status, error, created_at, finished_at) ",
        );
        insert.push_values(rows, |mut values, (row, error)| {
            values
                .push_bind(row.cycle_id)
                .push_bind(if row.cycle_id.is_some() { "pull" } else { "scim" })
                .push_bind(row.ws)
                .push_bind(0_i64)
                .push_bind(row.operation.kind().as_str())
                .push_bind(row.operation.okta_id())
                .push_bind(row.detail)
                .push_bind(if error.is_some() { "failed" } else { "applied" })
                .push_bind(*error)
                .push_bind($now)
                .push_bind($now);
        });
        insert.build().execute(&mut *$tx).await.map_err(StoreError::from)
    }};
}

/// Inserts a finished journal entry (`$error` None: applied) in `$tx`.
macro_rules! insert_journal_row {
    ($tx:ident, $row:expr, $error:expr, $now:expr) => {{
        let row: &JournalRow<'_> = $row;
        let error: Option<&str> = $error;
        insert_journal_rows!(
            $tx,
            &[(
                JournalRow {
                    cycle_id: row.cycle_id,
                    ws: row.ws,
                    operation: row.operation,
                    detail: row.detail
                },
                error,
            )],
            $now
        )
    }};
}

/// SCIM creates of users in one workspace, applied and journaled in `$tx` with one
/// statement each for the check, the users and the journal: what each would do alone
/// (`PushUser` with `create`). Any of them failing (an id taken, a userName held, in any
/// letter case) returns from the enclosing function, and each is then written alone.
macro_rules! push_user_creates {
    ($tx:ident, $writes:expr, $now:expr) => {{
        let writes: &[QueuedWrite] = $writes;
        let ws = writes.first().map(|w| w.ws.as_str()).unwrap_or_default();
        let pushed: Vec<&PushedObject> = writes
            .iter()
            .filter_map(|w| match &w.operation {
                Operation::PushUser(p) => Some(p),
                _ => None,
            })
            .collect();
        let mut select =
            sqlx::QueryBuilder::new("SELECT id FROM workspace_users WHERE workspace_id = ");
        select.push_bind(ws).push(" AND id IN (");
        let mut ids = select.separated(", ");
        for p in &pushed {
            ids.push_bind(p.workspace_id.as_str());
        }
        select.push(")");
        let taken: Option<(String,)> = select.build_query_as().fetch_optional(&mut *$tx).await?;
        if let Some((id,)) = taken {
            return Err(StoreError::Conflict(format!("{id} already exists")));
        }
        let docs = pushed
            .iter()
            .map(|p| parse_doc(&p.document))
            .collect::<Result<Vec<Value>, StoreError>>()?;
        let users: Vec<UserWrite<'_>> = pushed
            .iter()
            .zip(&docs)
            .map(|(p, doc)| UserWrite {
                id: &p.workspace_id,
                okta_id: None,
                doc,
                pushed: Pushed::ReceivedAt(p.received_at),
            })
            .collect();
        write_users!($tx, ws, &users, $now)?;
        let entries: Vec<(JournalRow<'_>, Option<&str>)> =
            writes.iter().map(|w| (w.entry(), None)).collect();
        insert_journal_rows!($tx, &entries, $now)?;
    }};
}

/// Applies one journal entry's operation inside `$tx` and writes the entry with its
/// outcome; evaluates to the soft error (kept, journaled as failed) or returns a hard one
/// from the enclosing function (nothing kept).
macro_rules! apply_journaled_in_tx {
    ($tx:ident, $entry:expr, $now:expr) => {{
        let entry: &JournalRow<'_> = $entry;
        let ws = entry.ws;
        let soft = apply_in_tx!($tx, ws, entry.operation, $now);
        let message = soft.as_ref().map(ToString::to_string);
        insert_journal_row!($tx, entry, message.as_deref(), $now)?;
        soft
    }};
}

/// Applies one operation inside the transaction `$tx`. A hard error returns from the
/// enclosing function (the transaction is dropped, so nothing of it is kept); evaluates to
/// a soft error: the operation's own changes stand, but it did not take full effect
/// (members whose users do not exist yet).
macro_rules! apply_in_tx {
    ($tx:ident, $ws:expr, $operation:expr, $now:expr) => {{
        let mut soft: Option<StoreError> = None;
        match $operation {
            Operation::CreateUser { okta_id, attributes } => {
                create_users!($tx, $ws, &[(okta_id.as_str(), attributes)], $now);
            }
            Operation::AdoptUser { okta_id, workspace_id: object_id, attributes, .. } => {
                let old: Option<(String,)> = sqlx::query_as(
                    "SELECT doc FROM workspace_users WHERE workspace_id = $1 AND id = $2 AND (okta_id IS NULL OR okta_id = $3)",
                )
                .bind($ws)
                .bind(object_id)
                .bind(okta_id)
                .fetch_optional(&mut *$tx)
                .await?;
                let Some((old,)) = old else {
                    return Err(StoreError::NotFound(format!(
                        "user {object_id} to adopt is gone or managed by another Okta user"
                    )));
                };
                let doc = scim_wire::merge_user(Some(&parse_doc(&old)?), attributes, true, Some(okta_id));
                write_user!($tx, $ws, &UserWrite { id: object_id, okta_id: Some(okta_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::UpdateUser { okta_id, to: attributes, .. }
            | Operation::ReactivateUser { okta_id, attributes, .. } => {
                let (id, old) = find_doc!($tx, MANAGED_USER, $ws, okta_id, format!("no managed user for Okta user {okta_id}"))?;
                let doc = scim_wire::merge_user(Some(&old), attributes, true, Some(okta_id));
                write_user!($tx, $ws, &UserWrite { id: &id, okta_id: Some(okta_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::DeactivateUser { okta_id, .. } => {
                let (id, mut doc) = find_doc!($tx, MANAGED_USER, $ws, okta_id, format!("no managed user for Okta user {okta_id}"))?;
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("active".into(), Value::Bool(false));
                }
                write_user!($tx, $ws, &UserWrite { id: &id, okta_id: Some(okta_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::CreateGroup { okta_group_id, display_name, adopt } => {
                let existing = match adopt {
                    Some(object_id) => sqlx::query_as::<_, (String, String)>(
                        "SELECT id, doc FROM workspace_groups WHERE workspace_id = $1 AND id = $2 AND (okta_group_id IS NULL OR okta_group_id = $3)",
                    )
                    .bind($ws)
                    .bind(object_id)
                    .bind(okta_group_id)
                    .fetch_optional(&mut *$tx)
                    .await?,
                    None => sqlx::query_as::<_, (String, String)>(
                        "SELECT id, doc FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2",
                    )
                    .bind($ws)
                    .bind(okta_group_id)
                    .fetch_optional(&mut *$tx)
                    .await?,
                };
                let (id, old) = match (existing, adopt) {
                    (Some((id, doc)), _) => (id, Some(parse_doc(&doc)?)),
                    (None, Some(object_id)) => {
                        return Err(StoreError::NotFound(format!("group {object_id} to link is gone or linked elsewhere")));
                    }
                    (None, None) => (super::new_object_id(), None),
                };
                // Linking keeps the workspace group's name until a rename says otherwise.
                let name = match (&old, adopt) {
                    (Some(doc), Some(_)) => doc.get("displayName").and_then(Value::as_str).unwrap_or(display_name).to_owned(),
                    _ => display_name.clone(),
                };
                let doc = scim_wire::merge_group(old.as_ref(), &name);
                write_group!($tx, $ws, &GroupWrite { id: &id, okta_group_id: Some(okta_group_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::RenameGroup { okta_group_id, to, .. } => {
                let (id, old) = find_doc!($tx, PUSHED_GROUP, $ws, okta_group_id, format!("pushed group {okta_group_id} does not exist"))?;
                let doc = scim_wire::merge_group(Some(&old), to);
                write_group!($tx, $ws, &GroupWrite { id: &id, okta_group_id: Some(okta_group_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::AddMembers { okta_group_id, members } => {
                let (id, old) = find_doc!($tx, PUSHED_GROUP, $ws, okta_group_id, format!("pushed group {okta_group_id} does not exist"))?;
                let okta_ids: Vec<&str> = members.iter().map(String::as_str).collect();
                let found = resolve_members!($tx, $ws, &okta_ids);
                let mut add = Vec::new();
                let mut missing = Vec::new();
                for okta_id in members {
                    match found.get(okta_id) {
                        Some(user) => add.push(user.clone()),
                        None => missing.push(okta_id.clone()),
                    }
                }
                let doc = scim_wire::change_group_members(&old, &add, &[]);
                write_group!($tx, $ws, &GroupWrite { id: &id, okta_group_id: Some(okta_group_id), doc: &doc, pushed: Pushed::No }, $now)?;
                if !missing.is_empty() {
                    // Keep the members that exist; the missing ones come back next cycle.
                    soft = Some(StoreError::NotFound(format!(
                        "members not in the workspace yet: {}",
                        missing.join(", ")
                    )));
                }
            }
            Operation::RemoveMembers { okta_group_id, members } => {
                let (id, old) = find_doc!($tx, PUSHED_GROUP, $ws, okta_group_id, format!("pushed group {okta_group_id} does not exist"))?;
                let remove: Vec<String> = members.iter().map(|m| m.workspace_id.clone()).collect();
                let doc = scim_wire::change_group_members(&old, &[], &remove);
                write_group!($tx, $ws, &GroupWrite { id: &id, okta_group_id: Some(okta_group_id), doc: &doc, pushed: Pushed::No }, $now)?;
            }
            Operation::UnlinkGroup { okta_group_id, delete, .. } => {
                if *delete {
                    sqlx::query("DELETE FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2")
                        .bind($ws)
                        .bind(okta_group_id)
                        .execute(&mut *$tx)
                        .await?;
                } else {
                    sqlx::query(
                        "UPDATE workspace_groups SET okta_group_id = NULL, version = version + 1, updated_at = $3 \
                         WHERE workspace_id = $1 AND okta_group_id = $2",
                    )
                    .bind($ws)
                    .bind(okta_group_id)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                }
            }
            Operation::PushUser(p) => {
                let okta_id = check_push!($tx, $ws, "SELECT okta_id, version FROM workspace_users WHERE workspace_id = $1 AND id = $2", p)?;
                let doc = parse_doc(&p.document)?;
                write_user!($tx, $ws, &UserWrite { id: &p.workspace_id, okta_id: okta_id.as_deref(), doc: &doc, pushed: Pushed::ReceivedAt(p.received_at) }, $now)?;
            }
            Operation::PushGroup(p) => {
                let okta_group_id = check_push!($tx, $ws, "SELECT okta_group_id, version FROM workspace_groups WHERE workspace_id = $1 AND id = $2", p)?;
                let doc = parse_doc(&p.document)?;
                write_group!($tx, $ws, &GroupWrite { id: &p.workspace_id, okta_group_id: okta_group_id.as_deref(), doc: &doc, pushed: Pushed::ReceivedAt(p.received_at) }, $now)?;
            }
            Operation::DeleteUser { workspace_id: id } => {
                let groups: Vec<(String, Option<String>, String)> = sqlx::query_as(
                    "SELECT g.id, g.okta_group_id, g.doc FROM workspace_groups g JOIN workspace_group_members m \
                     ON m.workspace_id = g.workspace_id AND m.group_id = g.id WHERE g.workspace_id = $1 AND m.user_id = $2",
                )
                .bind($ws)
                .bind(id)
                .fetch_all(&mut *$tx)
                .await?;
                for (group_id, okta_group_id, doc) in groups {
                    let doc = scim_wire::change_group_members(&parse_doc(&doc)?, &[], std::slice::from_ref(id));
                    write_group!($tx, $ws, &GroupWrite { id: &group_id, okta_group_id: okta_group_id.as_deref(), doc: &doc, pushed: Pushed::Now }, $now)?;
                }
                let done = sqlx::query("DELETE FROM workspace_users WHERE workspace_id = $1 AND id = $2")
                    .bind($ws)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("no user {id}")));
                }
            }
            Operation::DeleteGroup { workspace_id: id } => {
                let done = sqlx::query("DELETE FROM workspace_groups WHERE workspace_id = $1 AND id = $2")
                    .bind($ws)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("no group {id}")));
                }
            }
        }
        soft
    }};
}

impl Store {
    pub async fn load_workspace(&self, workspace_id: &str) -> Result<WorkspaceState, StoreError> {
        let (users, groups, members) = on_pool!(self, pool => {
            let users: Vec<UserRow> = sqlx::query_as(
                "SELECT id, okta_id, external_id, user_name, given_name, family_name, display_name, email, active, pushed_at \
                 FROM workspace_users WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            let groups: Vec<(String, Option<String>, String, Option<i64>)> = sqlx::query_as(
                "SELECT id, okta_group_id, display_name, pushed_at FROM workspace_groups WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            let members: Vec<(String, String)> = sqlx::query_as(
                "SELECT group_id, user_id FROM workspace_group_members WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            (users, groups, members)
        });
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, user) in members {
            by_group.entry(group).or_default().push(user);
        }
        Ok(WorkspaceState {
            users: users.into_iter().map(user_from_row).collect(),
            groups: groups
                .into_iter()
                .map(
                    |(id, okta_group_id, display_name, pushed_at)| WorkspaceGroup {
                        members: by_group
                            .remove(&id)
                            .unwrap_or_default()
                            .into_iter()
                            .collect(),
                        id,
                        okta_group_id,
                        display_name,
                        pushed_at,
                    },
                )
                .collect(),
        })
    }

    /// Inserts an unmanaged user (one oktasync neither created nor adopted), as an operator
    /// or another provisioning client would have. Used by tests.
    pub async fn insert_unmanaged_user(
        &self,
        workspace_id: &str,
        external_id: Option<&str>,
        attributes: &UserAttributes,
    ) -> Result<String, StoreError> {
        let id = super::new_object_id();
        let doc = scim_wire::merge_user(None, attributes, true, external_id);
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let w = UserWrite { id: &id, okta_id: None, doc: &doc, pushed: Pushed::No };
            write_user!(tx, workspace_id, &w, now)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    /// Applies one operation to the workspace held in the store. Idempotent: replaying an
    /// operation that already took effect changes nothing.
    pub async fn apply_operation(&self, ws: &str, operation: &Operation) -> Result<(), StoreError> {
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let soft = apply_in_tx!(tx, ws, operation, now);
            tx.commit().await?;
            if let Some(error) = soft {
                return Err(error);
            }
        });
        Ok(())
    }

    /// Applies operations in one transaction (a first sync writes 100k users: one commit
    /// per operation would cost more than the writes). If any of them fails, the
    /// transaction keeps nothing and each is applied on its own, so every operation still
    /// gets its own outcome and one failure never blocks the others.
    pub async fn apply_operations(
        &self,
        ws: &str,
        operations: &[&Operation],
    ) -> Vec<Result<(), StoreError>> {
        match self.apply_all_or_none(ws, operations).await {
            Ok(()) => operations.iter().map(|_| Ok(())).collect(),
            Err(error) => {
                tracing::debug!(workspace = ws, operations = operations.len(), error = %error, "a batch failed: applying its operations one by one");
                let mut results = Vec::with_capacity(operations.len());
                for operation in operations {
                    results.push(self.apply_operation(ws, operation).await);
                }
                results
            }
        }
    }

    /// Applies one operation and writes its journal entry (applied, or failed with the
    /// error) in the same transaction: one commit instead of three for a SCIM write. An
    /// operation that fails keeps nothing and is journaled as failed on its own. The outer
    /// error is the journal's: the failure could not even be recorded.
    pub async fn apply_journaled(
        &self,
        ws: &str,
        cycle_id: Option<i64>,
        operation: &Operation,
    ) -> Result<Result<(), StoreError>, StoreError> {
        let detail = render::operation_json(operation).to_string();
        if let Pool::Sqlite(_) = self.pool {
            return self
                .apply_journaled_together(ws, cycle_id, operation, detail)
                .await;
        }
        self.apply_journaled_alone(&JournalRow {
            cycle_id,
            ws,
            operation,
            detail: &detail,
        })
        .await
    }

    async fn apply_journaled_alone(
        &self,
        entry: &JournalRow<'_>,
    ) -> Result<Result<(), StoreError>, StoreError> {
        match self.apply_and_journal(entry).await {
            Ok(soft) => Ok(soft.map_or(Ok(()), Err)),
            Err(error) => {
                let message = error.to_string();
                on_pool!(self, pool => {
                    let mut tx = pool.begin_write().await?;
                    insert_journal_row!(tx, entry, Some(message.as_str()), now_millis())?;
                    tx.commit().await?;
                });
                Ok(Err(error))
            }
        }
    }

    /// SQLite has one writer at a time, so concurrent single writes (SCIM requests) share
    /// commits: each is queued, and whoever holds the write turn next writes everything
    /// queued by then in one transaction, each operation with its journal entry. If one of
    /// them fails hard, the transaction keeps nothing and each is written on its own, so
    /// every write still has its own outcome.
    async fn apply_journaled_together(
        &self,
        ws: &str,
        cycle_id: Option<i64>,
        operation: &Operation,
        detail: String,
    ) -> Result<Result<(), StoreError>, StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(QueuedWrite {
                ws: ws.to_owned(),
                cycle_id,
                operation: operation.clone(),
                detail,
                done,
            });
        // In a task of its own: a request dropped while it waits (its client gone) must not
        // leave its write queued with nobody to take the turn for it.
        let store = self.clone();
        tokio::spawn(async move { store.write_queued().await });
        outcome
            .await
            .unwrap_or_else(|_| Err(StoreError::Invalid("the queued write was dropped".into())))
    }

    async fn write_queued(&self) {
        let Pool::Sqlite(pool) = &self.pool else {
            return;
        };
        let turn = super::sqlite_write_turn().await;
        let writes = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        if writes.is_empty() {
            // An earlier turn wrote them.
            return;
        }
        match Self::write_together(pool, turn, &writes).await {
            Ok(softs) => {
                for (write, soft) in writes.into_iter().zip(softs) {
                    let _ = write.done.send(Ok(soft.map_or(Ok(()), Err)));
                }
            }
            Err(error) => {
                tracing::debug!(writes = writes.len(), error = %error, "a group of writes failed: writing them one by one");
                for write in writes {
                    let outcome = self.apply_journaled_alone(&write.entry()).await;
                    let _ = write.done.send(outcome);
                }
            }
        }
    }

    /// Every queued write in one transaction; the soft error of each.
    async fn write_together(
        pool: &sqlx::SqlitePool,
        turn: tokio::sync::OwnedMutexGuard<()>,
        writes: &[QueuedWrite],
    ) -> Result<Vec<Option<StoreError>>, StoreError> {
        let now = now_millis();
        let mut tx = super::begin_sqlite_write(pool, turn).await?;
        let mut softs = Vec::with_capacity(writes.len());
        let mut rest = writes;
        while let Some(write) = rest.first() {
            let creates = leading_user_creates(rest);
            if creates > 1 {
                push_user_creates!(tx, &rest[..creates], now);
                softs.extend((0..creates).map(|_| None));
                rest = &rest[creates..];
                continue;
            }
            softs.push(apply_journaled_in_tx!(tx, &write.entry(), now));
            rest = &rest[1..];
        }
        tx.commit().await?;
        Ok(softs)
    }

    /// The operation and its entry in one transaction; evaluates to a soft error (kept,
    /// journaled as failed) or returns a hard one (nothing kept).
    async fn apply_and_journal(
        &self,
        entry: &JournalRow<'_>,
    ) -> Result<Option<StoreError>, StoreError> {
        let now = now_millis();
        let soft = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let soft = apply_journaled_in_tx!(tx, entry, now);
            tx.commit().await?;
            soft
        });
        Ok(soft)
    }

    async fn apply_all_or_none(
        &self,
        ws: &str,
        operations: &[&Operation],
    ) -> Result<(), StoreError> {
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut rest = operations;
            while let Some(operation) = rest.first() {
                let creates = leading_creates(rest);
                if creates.len() > 1 {
                    create_users!(tx, ws, &creates, now);
                    rest = &rest[creates.len()..];
                    continue;
                }
                let groups = leading_group_creates(rest);
                if groups.len() > 1 {
                    create_groups!(tx, ws, &groups, now);
                    rest = &rest[groups.len()..];
                    continue;
                }
                let adds = leading_member_adds(rest);
                if adds.len() > 1 {
                    add_members!(tx, ws, &adds, now);
                    rest = &rest[adds.len()..];
                    continue;
                }
                if let Some(error) = apply_in_tx!(tx, ws, *operation, now) {
                    return Err(error);
                }
                rest = &rest[1..];
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

/// The `CreateUser` operations at the start of `operations`, up to the first other one or
/// the first Okta user seen twice (the second must find the first's row).
fn leading_creates<'a>(operations: &[&'a Operation]) -> Vec<(&'a str, &'a UserAttributes)> {
    let mut seen = std::collections::HashSet::new();
    operations
        .iter()
        .map_while(|operation| match operation {
            Operation::CreateUser {
                okta_id,
                attributes,
            } if seen.insert(okta_id.as_str()) => Some((okta_id.as_str(), attributes)),
            _ => None,
        })
        .collect()
}

/// How many of `writes`, from the first, are SCIM creates of users in the same workspace
/// (each with its own id).
fn leading_user_creates(writes: &[QueuedWrite]) -> usize {
    let mut seen = std::collections::HashSet::new();
    writes
        .iter()
        .take_while(|w| {
            matches!(&w.operation, Operation::PushUser(p) if p.create && seen.insert(p.workspace_id.as_str()))
                && writes.first().is_some_and(|first| first.ws == w.ws)
        })
        .count()
}

/// The `CreateGroup` operations that link no existing group at the start of `operations`,
/// up to the first other one or the first Okta group seen twice.
fn leading_group_creates<'a>(operations: &[&'a Operation]) -> Vec<(&'a str, &'a str)> {
    let mut seen = std::collections::HashSet::new();
    operations
        .iter()
        .map_while(|operation| match operation {
            Operation::CreateGroup {
                okta_group_id,
                display_name,
                adopt: None,
            } if seen.insert(okta_group_id.as_str()) => {
                Some((okta_group_id.as_str(), display_name.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// The `AddMembers` operations at the start of `operations`, up to the first other one or
/// the first Okta group seen twice.
fn leading_member_adds<'a>(operations: &[&'a Operation]) -> Vec<(&'a str, &'a [String])> {
    let mut seen = std::collections::HashSet::new();
    operations
        .iter()
        .map_while(|operation| match operation {
            Operation::AddMembers {
                okta_group_id,
                members,
            } if seen.insert(okta_group_id.as_str()) => {
                Some((okta_group_id.as_str(), members.as_slice()))
            }
            _ => None,
        })
        .collect()
}

/// The store as the mirror of a downstream SCIM workspace: objects recorded under the
/// target's own ids, with their Okta anchors.
impl Store {
    /// Records a user as the target holds it. `okta_id` None keeps the anchor the row has.
    pub async fn record_user(
        &self,
        ws: &str,
        id: &str,
        okta_id: Option<&str>,
        doc: &Value,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let existing: Option<(Option<String>,)> =
                sqlx::query_as("SELECT okta_id FROM workspace_users WHERE workspace_id = $1 AND id = $2")
                    .bind(ws)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let anchor = okta_id.map(str::to_owned).or(existing.and_then(|(a,)| a));
            if let Some(anchor) = &anchor {
                // The anchor moves to this id (the target re-created or re-identified it).
                sqlx::query("DELETE FROM workspace_users WHERE workspace_id = $1 AND okta_id = $2 AND id <> $3")
                    .bind(ws)
                    .bind(anchor)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            write_user!(tx, ws, &UserWrite { id, okta_id: anchor.as_deref(), doc, pushed: Pushed::No }, now)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a group as the target holds it. `okta_group_id` None keeps the row's link.
    pub async fn record_group(
        &self,
        ws: &str,
        id: &str,
        okta_group_id: Option<&str>,
        doc: &Value,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let existing: Option<(Option<String>,)> =
                sqlx::query_as("SELECT okta_group_id FROM workspace_groups WHERE workspace_id = $1 AND id = $2")
                    .bind(ws)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let link = okta_group_id.map(str::to_owned).or(existing.and_then(|(a,)| a));
            write_group!(tx, ws, &GroupWrite { id, okta_group_id: link.as_deref(), doc, pushed: Pushed::No }, now)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets the users (or groups) the target no longer lists.
    pub async fn forget_missing(
        &self,
        ws: &str,
        groups: bool,
        listed: &[String],
    ) -> Result<u64, StoreError> {
        let sql = if groups {
            "SELECT id FROM workspace_groups WHERE workspace_id = $1"
        } else {
            "SELECT id FROM workspace_users WHERE workspace_id = $1"
        };
        let ids: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(ws).fetch_all(pool).await?);
        let listed: std::collections::HashSet<&String> = listed.iter().collect();
        let mut forgotten = 0;
        for (id,) in ids.into_iter().filter(|(id,)| !listed.contains(id)) {
            on_pool!(self, pool => {
                let mut tx = pool.begin_write().await?;
                if groups {
                    sqlx::query("DELETE FROM workspace_groups WHERE workspace_id = $1 AND id = $2")
                        .bind(ws).bind(&id).execute(&mut *tx).await?;
                } else {
                    sqlx::query("DELETE FROM workspace_group_members WHERE workspace_id = $1 AND user_id = $2")
                        .bind(ws).bind(&id).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM workspace_users WHERE workspace_id = $1 AND id = $2")
                        .bind(ws).bind(&id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            forgotten += 1;
        }
        Ok(forgotten)
    }

    /// The id and document of the object recorded for an Okta user (or group).
    pub async fn mirrored(
        &self,
        ws: &str,
        group: bool,
        okta_id: &str,
    ) -> Result<Option<(String, Value)>, StoreError> {
        let sql = if group { PUSHED_GROUP } else { MANAGED_USER };
        let row: Option<(String, String)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(ws)
            .bind(okta_id)
            .fetch_optional(pool)
            .await?);
        row.map(|(id, doc)| Ok((id, parse_doc(&doc)?))).transpose()
    }

    /// The document of a user recorded under id.
    pub async fn user_doc(&self, ws: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT doc FROM workspace_users WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws)
        .bind(id)
        .fetch_optional(pool)
        .await?);
        row.map(|(doc,)| parse_doc(&doc)).transpose()
    }
}
