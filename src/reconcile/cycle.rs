//! One reconciliation cycle: a single Okta read shared by every workspace, then per
//! workspace desired state, plan, gate and apply. This is the engine's entry point for the
//! CLI and the daemon alike.

use std::collections::BTreeSet;

use crate::model::{OktaSnapshot, WorkspaceState};
use crate::reconcile::apply::{ApplyOutcome, Progress, apply};
use crate::reconcile::desired::{
    DesiredState, GroupSelector, WorkspacePolicy, desired_state, desired_users,
};
use crate::reconcile::plan::{OpKind, Operation, Plan, PlanOptions, plan};
use crate::reconcile::ports::{
    OktaSource, OnUsersRead, ReadRequest, StateError, StateStore, TargetError, UsersRead,
    WorkspaceTarget,
};
use crate::reconcile::safety::{GateInput, HoldReason, Thresholds, gate};

#[derive(Debug, Clone)]
pub struct WorkspaceSpec {
    pub policy: WorkspacePolicy,
    pub plan_options: PlanOptions,
}

#[derive(Debug, Clone, Copy)]
pub struct CycleOptions {
    /// Plan only (`plan`, `sync --dry-run`): nothing is applied.
    pub dry_run: bool,
    /// Release operations held by the thresholds (`sync --force`). Never releases
    /// removals held because the read was incomplete.
    pub force: bool,
    pub thresholds: Thresholds,
}

/// What a cycle did (or, when dry, would do) in one workspace.
#[derive(Debug, Default)]
pub struct WorkspaceReport {
    pub workspace_id: String,
    pub complete_read: bool,
    pub read_failures: Vec<String>,
    /// Every operation the plan contains (for a dry run; empty otherwise, where `applied`,
    /// `failed` and `held` say everything).
    pub planned: Plan,
    pub applied: Vec<Operation>,
    pub failed: Vec<(Operation, String)>,
    pub held: Vec<Operation>,
    pub hold_reason: Option<HoldReason>,
    /// Set when deactivations are held by the thresholds: approve with `plan --approve ID`.
    pub held_plan_id: Option<String>,
    /// The workspace could not even be loaded.
    pub error: Option<String>,
}

impl WorkspaceReport {
    /// 0 done, 1 runtime failure, 3 held by a threshold (the contract's exit statuses).
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() || !self.failed.is_empty() || !self.complete_read {
            1
        } else if matches!(self.hold_reason, Some(HoldReason::OverThreshold { .. })) {
            3
        } else {
            0
        }
    }
}

#[derive(Debug, Default)]
pub struct CycleReport {
    pub workspaces: Vec<WorkspaceReport>,
}

impl CycleReport {
    pub fn exit_code(&self) -> u8 {
        let codes: BTreeSet<u8> = self.workspaces.iter().map(|w| w.exit_code()).collect();
        if codes.contains(&1) {
            1
        } else if codes.contains(&3) {
            3
        } else {
            0
        }
    }
}

/// The apps a read for `workspaces` covers, and those whose group-push mappings it reads.
pub fn read_scope(workspaces: &[WorkspaceSpec]) -> (BTreeSet<String>, BTreeSet<String>) {
    let app_ids = workspaces
        .iter()
        .map(|w| w.policy.okta_app_id.clone())
        .collect();
    let push_mapping_app_ids = workspaces
        .iter()
        .filter(|w| matches!(w.policy.push_groups, GroupSelector::OktaPushMappings))
        .map(|w| w.policy.okta_app_id.clone())
        .collect();
    (app_ids, push_mapping_app_ids)
}

/// Reads Okta once for all `workspaces`.
pub async fn read_okta<O: OktaSource>(
    source: &O,
    workspaces: &[WorkspaceSpec],
    on_users_read: Option<OnUsersRead<'_>>,
) -> OktaSnapshot {
    let (app_ids, push_mapping_app_ids) = read_scope(workspaces);
    let select = |snapshot: &OktaSnapshot| {
        workspaces
            .iter()
            .flat_map(|w| crate::reconcile::desired::pushed_groups(snapshot, &w.policy))
            .collect()
    };
    source
        .read(ReadRequest {
            app_ids,
            push_mapping_app_ids,
            select_groups: &select,
            on_users_read,
        })
        .await
}

pub async fn run_cycle<O, T, S>(
    source: &O,
    target: &T,
    state: &S,
    workspaces: &[WorkspaceSpec],
    options: CycleOptions,
    progress: Progress<'_>,
) -> Result<CycleReport, StateError>
where
    O: OktaSource,
    T: WorkspaceTarget,
    S: StateStore,
{
    let started = std::time::Instant::now();
    // A full read lists users and app assignments well before the group members: the users
    // each workspace should hold are known then, and applied while the members are read.
    let (early_tx, early_rx) = tokio::sync::oneshot::channel::<(Vec<DesiredState>, i64)>();
    let early_tx = std::sync::Mutex::new(Some(early_tx));
    let take_early_tx = || early_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    let on_users_read = |read: &UsersRead<'_>| {
        if let Some(tx) = take_early_tx() {
            let desired = workspaces
                .iter()
                .map(|spec| {
                    let assigned = read.assigned.get(spec.policy.okta_app_id.as_str()).copied();
                    desired_users(read.users, assigned)
                })
                .collect();
            let _ = tx.send((desired, read.read_started_at));
        }
    };
    let read = async {
        let on_users_read: OnUsersRead<'_> = &on_users_read;
        let snapshot = read_okta(
            source,
            workspaces,
            (!options.dry_run).then_some(on_users_read),
        )
        .await;
        // No users read early (an incremental or failed read): the early apply ends.
        drop(take_early_tx());
        snapshot
    };
    let early = async {
        let mut early: Vec<Option<Early>> = workspaces.iter().map(|_| None).collect();
        if let Ok((desired, read_started_at)) = early_rx.await {
            for ((spec, desired), slot) in workspaces.iter().zip(desired).zip(&mut early) {
                *slot = Some(
                    apply_early(target, state, spec, desired, read_started_at, progress).await?,
                );
            }
        }
        // What planning and applying them freed sits between the snapshot's growing
        // member sets: hand it back before the rest of the cycle builds its own.
        crate::heap::release_freed();
        Ok::<_, StateError>(early)
    };
    let (snapshot, early) = tokio::join!(read, early);
    let early = early?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        users = snapshot.users.len(),
        complete = snapshot.complete,
        "Okta read"
    );
    if !snapshot.complete {
        tracing::warn!(failures = ?snapshot.failures, "Okta read incomplete: no removals this cycle");
    }
    // Every workspace's desired state, then the snapshot goes: its users are the cycle's
    // largest structure, and no longer needed while each workspace is loaded and planned.
    let desiring = std::time::Instant::now();
    let desired: Vec<DesiredState> = workspaces
        .iter()
        .map(|spec| desired_state(&snapshot, &spec.policy))
        .collect();
    let read = ReadOutcome {
        complete: snapshot.complete,
        failures: snapshot.failures,
        started_at: snapshot.read_started_at,
    };
    drop(snapshot.users);
    drop(snapshot.group_members);
    drop(snapshot.apps);
    // Its pages go back rather than stay resident as holes under the desired states.
    crate::heap::release_freed();
    tracing::debug!(
        elapsed_ms = desiring.elapsed().as_millis() as u64,
        "desired states computed, snapshot released"
    );
    let mut report = CycleReport::default();
    for ((spec, desired), early) in workspaces.iter().zip(desired).zip(early) {
        let ws = reconcile_workspace(
            &read, desired, target, state, spec, options, progress, early,
        )
        .await?;
        report.workspaces.push(ws);
    }
    Ok(report)
}

/// What the workspaces' reconciliation needs to know of the read besides desired states.
struct ReadOutcome {
    complete: bool,
    failures: Vec<String>,
    started_at: i64,
}

/// A workspace's user operations applied before its read ended.
struct Early {
    cycle_id: i64,
    /// Managed active users before them: what the deactivation thresholds compare with
    /// (None: the workspace could not be loaded then, and nothing was applied early).
    managed_active: Option<usize>,
    outcome: ApplyOutcome,
}

/// Operations that only add or update users: the complete read's plan would apply them too
/// whatever its groups say (the gate never holds them), so they need not wait for it.
fn applies_early(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::CreateUser | OpKind::AdoptUser | OpKind::UpdateUser | OpKind::ReactivateUser
    )
}

fn count_managed_active(current: &WorkspaceState) -> usize {
    current
        .users
        .iter()
        .filter(|u| u.is_managed() && u.active)
        .count()
}

/// Begins the workspace's cycle and applies the user operations `desired` (its users part)
/// calls for.
async fn apply_early<T: WorkspaceTarget, S: StateStore>(
    target: &T,
    state: &S,
    spec: &WorkspaceSpec,
    desired: DesiredState,
    read_started_at: i64,
    progress: Progress<'_>,
) -> Result<Early, StateError> {
    let workspace_id = spec.policy.workspace_id.as_str();
    let cycle_id = state.begin_cycle(workspace_id, false).await?;
    let mut early = Early {
        cycle_id,
        managed_active: None,
        outcome: ApplyOutcome::default(),
    };
    // A workspace that cannot be loaded now is reported by the cycle proper.
    let Ok(current) = target.load(workspace_id).await else {
        return Ok(early);
    };
    early.managed_active = Some(count_managed_active(&current));
    let plan_options = PlanOptions {
        read_started_at: Some(read_started_at),
        ..spec.plan_options
    };
    let mut operations = plan(&desired, &current, plan_options).operations;
    operations.retain(|op| applies_early(op.kind()));
    drop(current);
    if !operations.is_empty() {
        let applying = std::time::Instant::now();
        early.outcome = apply(
            target,
            state,
            Some(cycle_id),
            workspace_id,
            operations,
            progress,
        )
        .await?;
        tracing::debug!(
            workspace = workspace_id,
            applied = early.outcome.applied.len(),
            failed = early.outcome.failed.len(),
            elapsed_ms = applying.elapsed().as_millis() as u64,
            "users applied before the read ended"
        );
    }
    Ok(early)
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_workspace<T: WorkspaceTarget, S: StateStore>(
    read: &ReadOutcome,
    desired: DesiredState,
    target: &T,
    state: &S,
    spec: &WorkspaceSpec,
    options: CycleOptions,
    progress: Progress<'_>,
    early: Option<Early>,
) -> Result<WorkspaceReport, StateError> {
    let workspace_id = spec.policy.workspace_id.as_str();
    let mut report = WorkspaceReport {
        workspace_id: workspace_id.to_owned(),
        complete_read: read.complete,
        read_failures: read.failures.clone(),
        ..WorkspaceReport::default()
    };
    let cycle_id = match &early {
        Some(early) => early.cycle_id,
        None => state.begin_cycle(workspace_id, options.dry_run).await?,
    };
    let loading = std::time::Instant::now();
    let current = match target.load(workspace_id).await {
        Ok(current) => current,
        Err(TargetError { message, .. }) => {
            report.error = Some(format!("loading the workspace failed: {message}"));
            state.finish_cycle(cycle_id, "failed", &message).await?;
            return Ok(report);
        }
    };
    tracing::debug!(
        workspace = workspace_id,
        users = current.users.len(),
        groups = current.groups.len(),
        elapsed_ms = loading.elapsed().as_millis() as u64,
        "workspace loaded"
    );
    let plan_options = PlanOptions {
        read_started_at: Some(read.started_at),
        ..spec.plan_options
    };
    let planning = std::time::Instant::now();
    let mut full_plan = plan(&desired, &current, plan_options);
    tracing::debug!(
        workspace = workspace_id,
        operations = full_plan.operations.len(),
        elapsed_ms = planning.elapsed().as_millis() as u64,
        "planned"
    );
    let managed_active = early
        .as_ref()
        .and_then(|early| early.managed_active)
        .unwrap_or_else(|| count_managed_active(&current));
    let deactivations: Vec<String> = full_plan
        .operations
        .iter()
        .filter(|op| op.kind() == OpKind::DeactivateUser)
        .map(|op| op.okta_id().to_owned())
        .collect();
    let over = crate::reconcile::safety::exceeds_thresholds(
        deactivations.len(),
        managed_active,
        options.thresholds,
    );
    let held_plan = if over && read.complete {
        Some(state.hold(workspace_id, &deactivations).await?)
    } else {
        None
    };
    let released = options.force || held_plan.as_ref().is_some_and(|h| h.approved);
    // Kept whole only for a dry run, which reports it: a first sync of 100k users plans
    // 100k operations, and a second copy of them is tens of MB at the cycle's peak.
    let to_gate = if options.dry_run {
        full_plan.clone()
    } else {
        std::mem::take(&mut full_plan)
    };
    let gated = gate(
        to_gate,
        GateInput {
            complete_read: read.complete,
            managed_active,
            thresholds: options.thresholds,
            released,
        },
    );
    report.planned = full_plan;
    report.held = gated.held;
    report.hold_reason = gated.reason;
    if matches!(report.hold_reason, Some(HoldReason::OverThreshold { .. })) {
        report.held_plan_id = held_plan.as_ref().map(|h| h.id.clone());
    }
    if options.dry_run {
        state.finish_cycle(cycle_id, "planned", "").await?;
        return Ok(report);
    }
    // The plan says everything now: free the two workspaces before applying it.
    drop(desired);
    drop(current);
    let mut to_apply = gated.apply;
    let early = early.map(|e| e.outcome).unwrap_or_default();
    if !early.failed.is_empty() {
        // Failed once this cycle already: reported as such, and planned again next cycle.
        let failed: BTreeSet<(OpKind, &str)> = early
            .failed
            .iter()
            .map(|(op, _)| (op.kind(), op.okta_id()))
            .collect();
        to_apply.retain(|op| !failed.contains(&(op.kind(), op.okta_id())));
    }
    let applying = std::time::Instant::now();
    let outcome = apply(
        target,
        state,
        Some(cycle_id),
        workspace_id,
        to_apply,
        progress,
    )
    .await?;
    tracing::debug!(
        workspace = workspace_id,
        applied = outcome.applied.len(),
        failed = outcome.failed.len(),
        elapsed_ms = applying.elapsed().as_millis() as u64,
        "applied"
    );
    if released
        && let Some(h) = held_plan
        && outcome
            .applied
            .iter()
            .any(|op| op.kind() == OpKind::DeactivateUser)
    {
        state.consume_hold(&h.id).await?;
    }
    report.applied = early.applied;
    report.applied.extend(outcome.applied);
    report.failed = early
        .failed
        .into_iter()
        .chain(outcome.failed)
        .map(|(op, e)| (op, e.message))
        .collect();
    let result = match report.exit_code() {
        0 => "ok",
        3 => "held",
        _ => "failed",
    };
    let summary = format!(
        "applied={} failed={} held={}",
        report.applied.len(),
        report.failed.len(),
        report.held.len()
    );
    state.finish_cycle(cycle_id, result, &summary).await?;
    Ok(report)
}
