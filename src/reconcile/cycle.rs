//! One reconciliation cycle: a single Okta read shared by every workspace, then per
//! workspace desired state, plan, gate and apply. This is the engine's entry point for the
//! CLI and the daemon alike.

use std::collections::BTreeSet;

use crate::model::OktaSnapshot;
use crate::reconcile::apply::{Progress, apply};
use crate::reconcile::desired::{DesiredState, GroupSelector, WorkspacePolicy, desired_state};
use crate::reconcile::plan::{OpKind, Operation, Plan, PlanOptions, plan};
use crate::reconcile::ports::{
    OktaSource, ReadRequest, StateError, StateStore, TargetError, WorkspaceTarget,
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
pub async fn read_okta<O: OktaSource>(source: &O, workspaces: &[WorkspaceSpec]) -> OktaSnapshot {
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
    let snapshot = read_okta(source, workspaces).await;
    if !snapshot.complete {
        tracing::warn!(failures = ?snapshot.failures, "Okta read incomplete: no removals this cycle");
    }
    let mut report = CycleReport::default();
    for spec in workspaces {
        let ws = reconcile_workspace(&snapshot, target, state, spec, options, progress).await?;
        report.workspaces.push(ws);
    }
    Ok(report)
}

async fn reconcile_workspace<T: WorkspaceTarget, S: StateStore>(
    snapshot: &OktaSnapshot,
    target: &T,
    state: &S,
    spec: &WorkspaceSpec,
    options: CycleOptions,
    progress: Progress<'_>,
) -> Result<WorkspaceReport, StateError> {
    let workspace_id = spec.policy.workspace_id.as_str();
    let mut report = WorkspaceReport {
        workspace_id: workspace_id.to_owned(),
        complete_read: snapshot.complete,
        read_failures: snapshot.failures.clone(),
        ..WorkspaceReport::default()
    };
    let cycle_id = state.begin_cycle(workspace_id, options.dry_run).await?;
    let current = match target.load(workspace_id).await {
        Ok(current) => current,
        Err(TargetError { message, .. }) => {
            report.error = Some(format!("loading the workspace failed: {message}"));
            state.finish_cycle(cycle_id, "failed", &message).await?;
            return Ok(report);
        }
    };
    let desired: DesiredState = desired_state(snapshot, &spec.policy);
    let plan_options = PlanOptions {
        read_started_at: Some(snapshot.read_started_at),
        ..spec.plan_options
    };
    let mut full_plan = plan(&desired, &current, plan_options);
    let managed_active = current
        .users
        .iter()
        .filter(|u| u.is_managed() && u.active)
        .count();
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
    let held_plan = if over && snapshot.complete {
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
            complete_read: snapshot.complete,
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
    let outcome = apply(
        target,
        state,
        Some(cycle_id),
        workspace_id,
        gated.apply,
        progress,
    )
    .await?;
    if released
        && let Some(h) = held_plan
        && outcome
            .applied
            .iter()
            .any(|op| op.kind() == OpKind::DeactivateUser)
    {
        state.consume_hold(&h.id).await?;
    }
    report.applied = outcome.applied;
    report.failed = outcome
        .failed
        .into_iter()
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
