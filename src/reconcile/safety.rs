//! The safety gate between a plan and its application. Pure. It decides which operations
//! run now and which are held: nothing is removed on the strength of an incomplete read, and
//! a plan deactivating more users than the thresholds allow keeps its deactivations until an
//! operator approves them (`plan --approve ID`) or forces them (`sync --force`).

use crate::reconcile::plan::{OpKind, Operation, Plan};

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub max_deactivations: usize,
    pub max_deactivation_ratio: f64,
}

/// Why some operations were held back.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldReason {
    /// The Okta read failed somewhere: removals would rest on missing data.
    IncompleteRead,
    /// More deactivations than the thresholds allow.
    OverThreshold {
        deactivations: usize,
        managed_active: usize,
        max_deactivations: usize,
        max_deactivation_ratio: f64,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Gated {
    pub apply: Vec<Operation>,
    pub held: Vec<Operation>,
    pub reason: Option<HoldReason>,
}

/// What the gate knows beyond the plan itself.
#[derive(Debug, Clone, Copy)]
pub struct GateInput {
    pub complete_read: bool,
    /// Active users oktasync manages in this workspace before the plan.
    pub managed_active: usize,
    pub thresholds: Thresholds,
    /// `--force`, or an approval matching exactly this set of deactivations.
    pub released: bool,
}

/// The number of deactivations a plan may carry without approval.
pub fn exceeds_thresholds(deactivations: usize, managed_active: usize, t: Thresholds) -> bool {
    if deactivations == 0 {
        return false;
    }
    let ratio = deactivations as f64 / managed_active.max(1) as f64;
    deactivations > t.max_deactivations || ratio > t.max_deactivation_ratio
}

pub fn gate(plan: Plan, input: GateInput) -> Gated {
    if !input.complete_read {
        let (held, apply): (Vec<_>, Vec<_>) = plan
            .operations
            .into_iter()
            .partition(|op| op.kind().is_removal());
        let reason = (!held.is_empty()).then_some(HoldReason::IncompleteRead);
        return Gated {
            apply,
            held,
            reason,
        };
    }
    let deactivations = plan.count(OpKind::DeactivateUser);
    if input.released || !exceeds_thresholds(deactivations, input.managed_active, input.thresholds)
    {
        return Gated {
            apply: plan.operations,
            ..Gated::default()
        };
    }
    let (held, apply): (Vec<_>, Vec<_>) = plan
        .operations
        .into_iter()
        .partition(|op| op.kind() == OpKind::DeactivateUser);
    Gated {
        apply,
        held,
        reason: Some(HoldReason::OverThreshold {
            deactivations,
            managed_active: input.managed_active,
            max_deactivations: input.thresholds.max_deactivations,
            max_deactivation_ratio: input.thresholds.max_deactivation_ratio,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserAttributes;
    use crate::reconcile::plan::DeactivationReason;

    fn deactivate(id: &str) -> Operation {
        Operation::DeactivateUser {
            okta_id: id.into(),
            workspace_id: format!("ws-{id}"),
            reason: DeactivationReason::Deleted,
        }
    }

    fn create(id: &str) -> Operation {
        Operation::CreateUser {
            okta_id: id.into(),
            attributes: UserAttributes::default(),
        }
    }

    fn input(complete: bool, managed: usize, released: bool) -> GateInput {
        GateInput {
            complete_read: complete,
            managed_active: managed,
            thresholds: Thresholds {
                max_deactivations: 2,
                max_deactivation_ratio: 0.5,
            },
            released,
        }
    }

    #[test]
    fn incomplete_read_holds_every_removal_and_keeps_creates() {
        let plan = Plan {
            operations: vec![create("a"), deactivate("b")],
        };
        let g = gate(plan, input(false, 100, true));
        assert_eq!(g.apply, vec![create("a")]);
        assert_eq!(g.held, vec![deactivate("b")]);
        assert_eq!(g.reason, Some(HoldReason::IncompleteRead));
    }

    #[test]
    fn over_count_or_ratio_holds_deactivations_only() {
        let plan = Plan {
            operations: vec![
                create("a"),
                deactivate("b"),
                deactivate("c"),
                deactivate("d"),
            ],
        };
        let g = gate(plan.clone(), input(true, 100, false));
        assert_eq!(g.apply, vec![create("a")]);
        assert_eq!(g.held.len(), 3);
        assert!(matches!(g.reason, Some(HoldReason::OverThreshold { .. })));
        // ratio: 2 of 3 managed is over 0.5 even though the count is allowed
        let two = Plan {
            operations: vec![deactivate("b"), deactivate("c")],
        };
        assert_eq!(gate(two.clone(), input(true, 3, false)).held.len(), 2);
        assert_eq!(gate(two, input(true, 4, false)).held.len(), 0);
        // released: everything applies
        let g = gate(plan, input(true, 100, true));
        assert_eq!(g.apply.len(), 4);
        assert!(g.reason.is_none());
    }
}
