//! The engine's ports: the traits through which it reaches Okta, the workspace and its own
//! state. Adapters (`okta/`, `targets/`, `store/`) implement them; the engine never names an
//! adapter. Each has an in-memory fake for unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use crate::model::{
    AssignmentScope, OktaGroupId, OktaSnapshot, OktaUser, OktaUserId, WorkspaceState,
};
use crate::reconcile::plan::Operation;

/// Which groups' memberships to read, decided once groups, app group assignments and push
/// mappings are known (before the app's users are read, so members and users load together).
pub type GroupSelection<'a> = &'a (dyn Fn(&OktaSnapshot) -> BTreeSet<OktaGroupId> + Send + Sync);

/// The part of a full read that decides which users a workspace holds: every user and every
/// requested app's user assignments, each listing read to its end. Okta lists an app's
/// users whether assigned directly or through a group, so group members are not needed.
pub struct UsersRead<'a> {
    pub users: &'a BTreeMap<OktaUserId, OktaUser>,
    pub assigned: BTreeMap<&'a str, &'a BTreeMap<OktaUserId, AssignmentScope>>,
    /// When the read began (`OktaSnapshot::read_started_at`).
    pub read_started_at: i64,
}

/// Called once during a full read, as soon as its `UsersRead` is complete and while the
/// rest (group members) is still being read; never after a failed users or app-users
/// listing, and not at all by an incremental read.
pub type OnUsersRead<'a> = &'a (dyn Fn(&UsersRead<'_>) + Send + Sync);

pub struct ReadRequest<'a> {
    /// Apps whose user and group assignments are read.
    pub app_ids: BTreeSet<String>,
    /// Apps whose group-push mappings are read too.
    pub push_mapping_app_ids: BTreeSet<String>,
    pub select_groups: GroupSelection<'a>,
    pub on_users_read: Option<OnUsersRead<'a>>,
}

/// Okta, read-only. A failed listing never fails the call: it marks the snapshot incomplete
/// and names the failure, so the engine can still apply what is safe.
pub trait OktaSource: Send + Sync {
    fn read(&self, request: ReadRequest<'_>) -> impl Future<Output = OktaSnapshot> + Send;
}

/// An error from a workspace target, per operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub kind: TargetErrorKind,
}

/// What went wrong with one operation, as far as the caller needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetErrorKind {
    /// It may pass if retried (connection lost, busy database, 5xx).
    Transient,
    /// The object it addresses does not exist.
    NotFound,
    /// It would break a uniqueness rule (userName).
    Conflict,
    /// The object changed since the version the writer saw.
    VersionMismatch,
    /// The operation itself is invalid for the current state.
    Invalid,
}

/// A workspace: the local store (`local`) or a downstream SCIM service provider (`scim`).
pub trait WorkspaceTarget: Send + Sync {
    fn load(
        &self,
        workspace_id: &str,
    ) -> impl Future<Output = Result<WorkspaceState, TargetError>> + Send;

    /// How many operations on distinct objects of this workspace may run at once.
    fn max_in_flight(&self, _workspace_id: &str) -> usize {
        1
    }

    /// Applies one operation. Must be idempotent: applying it twice leaves the same state.
    fn execute(
        &self,
        workspace_id: &str,
        operation: &Operation,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// True when the target keeps the journal in its own store, so that one operation can
    /// be applied and journaled in a single write (`execute_journaled`).
    fn journals_in_place(&self, _workspace_id: &str) -> bool {
        false
    }

    /// Applies one operation and journals its outcome atomically with it. Called only when
    /// `journals_in_place`; the outer error is the journal's.
    fn execute_journaled<'a>(
        &'a self,
        _workspace_id: &'a str,
        _cycle_id: Option<i64>,
        _operation: &'a Operation,
    ) -> impl Future<Output = Result<Result<(), TargetError>, StateError>> + Send + 'a {
        async { Err(StateError("this target does not keep a journal".into())) }
    }

    /// How many consecutive operations `execute_batch` takes at once (with one in flight).
    fn batch_size(&self, _workspace_id: &str) -> usize {
        1
    }

    /// Applies operations in order, with an outcome each, as `execute` would one by one
    /// (which is what this default does); a target may make them one write.
    fn execute_batch<'a>(
        &'a self,
        workspace_id: &'a str,
        operations: &'a [&'a Operation],
    ) -> impl Future<Output = Vec<Result<(), TargetError>>> + Send + 'a {
        async move {
            let mut results = Vec::with_capacity(operations.len());
            for operation in operations {
                results.push(self.execute(workspace_id, operation).await);
            }
            results
        }
    }
}

/// An error from the engine's own state (the store behind the journal).
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

pub type JournalEntryId = i64;

/// The state of a plan held by the safety thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPlan {
    /// Stable for the same set of deactivations, so an operator can approve it by id.
    pub id: String,
    pub approved: bool,
}

/// The engine's memory: cycles, the journal of operations, held plans.
pub trait StateStore: Send + Sync {
    /// Starts a cycle for a workspace; operations left pending by an interrupted earlier
    /// cycle are marked superseded (the new plan recomputes them from the store).
    fn begin_cycle(
        &self,
        workspace_id: &str,
        dry_run: bool,
    ) -> impl Future<Output = Result<i64, StateError>> + Send;

    /// Records every operation about to be applied as pending, in one transaction.
    /// `cycle_id` is None for operations received over inbound SCIM.
    fn journal_pending(
        &self,
        cycle_id: Option<i64>,
        workspace_id: &str,
        operations: &[Operation],
    ) -> impl Future<Output = Result<Vec<JournalEntryId>, StateError>> + Send;

    /// The outcomes of operations journaled as pending (`None`: applied; else the error).
    fn journal_outcomes(
        &self,
        outcomes: &[(JournalEntryId, Option<&str>)],
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    fn finish_cycle(
        &self,
        cycle_id: i64,
        outcome: &str,
        summary: &str,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Records (or finds) the held plan for this set of deactivations.
    fn hold(
        &self,
        workspace_id: &str,
        deactivations: &[String],
    ) -> impl Future<Output = Result<HeldPlan, StateError>> + Send;

    /// Marks an approved held plan as used once its deactivations were applied.
    fn consume_hold(&self, id: &str) -> impl Future<Output = Result<(), StateError>> + Send;
}
