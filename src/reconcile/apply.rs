//! `apply`: the only place that executes a plan. Each operation is journaled as pending
//! before it runs and marked applied or failed after; one operation's failure never stops
//! the others, and an operation that depends on a failed one (members of a user that could
//! not be created) fails on its own and is planned again next cycle.
//!
//! A target that accepts several requests at once (`WorkspaceTarget::max_in_flight`) gets
//! up to that many operations on distinct objects at a time. The plan's phases stay in
//! order (every user operation finishes before the first group operation starts, so
//! memberships find their users), and the operations on one object run one after another
//! in plan order (a group's creation before its members). A target taking one at a time
//! may take consecutive operations as a batch (`WorkspaceTarget::batch_size`: the local
//! store writes a batch in one transaction), each still with its own outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::{StreamExt, stream};

use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{StateError, StateStore, TargetError, WorkspaceTarget};

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub applied: Vec<Operation>,
    pub failed: Vec<(Operation, TargetError)>,
}

/// Called after each operation, for progress display.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

/// Operations (by index in the plan) on one object, run in order.
type Chain = Vec<usize>;

pub async fn apply<T: WorkspaceTarget, S: StateStore>(
    target: &T,
    state: &S,
    cycle_id: Option<i64>,
    workspace_id: &str,
    operations: Vec<Operation>,
    progress: Progress<'_>,
) -> Result<ApplyOutcome, StateError> {
    if let [operation] = operations.as_slice()
        && target.journals_in_place(workspace_id)
    {
        // One operation (a SCIM write, a quiet cycle's change) and a target that is the
        // journal's own store: the write and its record commit together.
        let result = target
            .execute_journaled(workspace_id, cycle_id, operation)
            .await?;
        warn_failed(workspace_id, operation, &result);
        progress(1, 1);
        let mut outcome = ApplyOutcome::default();
        if let Some(operation) = operations.into_iter().next() {
            match result {
                Ok(()) => outcome.applied.push(operation),
                Err(error) => outcome.failed.push((operation, error)),
            }
        }
        return Ok(outcome);
    }
    let journaling = std::time::Instant::now();
    let entries = state
        .journal_pending(cycle_id, workspace_id, &operations)
        .await?;
    tracing::debug!(
        workspace = workspace_id,
        operations = operations.len(),
        elapsed_ms = journaling.elapsed().as_millis() as u64,
        "journaled as pending"
    );
    if entries.len() != operations.len() {
        return Err(StateError(format!(
            "journaled {} of {} operations",
            entries.len(),
            operations.len()
        )));
    }
    let total = operations.len();
    let in_flight = target.max_in_flight(workspace_id).max(1);
    // Batches only when one runs at a time: a batch is consecutive operations in order.
    let batch = if in_flight == 1 {
        target.batch_size(workspace_id).max(1)
    } else {
        1
    };
    let done = AtomicUsize::new(0);
    // Set by the first state error: no chain starts another operation, and those in
    // flight finish (and journal their outcome) before the error is returned.
    let stopping = AtomicBool::new(false);
    let run_chain = |chain: Chain| {
        let (operations, entries, done, stopping) = (&operations, &entries, &done, &stopping);
        async move {
            let mut results = Vec::with_capacity(chain.len());
            for indices in chain.chunks(batch) {
                let ops: Vec<&Operation> = indices.iter().map(|&i| &operations[i]).collect();
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let outcomes = match ops.as_slice() {
                    [operation] => vec![target.execute(workspace_id, operation).await],
                    _ => target.execute_batch(workspace_id, &ops).await,
                };
                if outcomes.len() != indices.len() {
                    stopping.store(true, Ordering::SeqCst);
                    return Err(StateError(format!(
                        "the target answered {} outcomes for {} operations",
                        outcomes.len(),
                        indices.len()
                    )));
                }
                let mut journal = Vec::with_capacity(indices.len());
                for ((&index, operation), result) in indices.iter().zip(&ops).zip(&outcomes) {
                    warn_failed(workspace_id, operation, result);
                    journal.push((
                        entries[index],
                        result.as_ref().err().map(|e| e.message.as_str()),
                    ));
                }
                if let Err(error) = state.journal_outcomes(&journal).await {
                    stopping.store(true, Ordering::SeqCst);
                    return Err(error);
                }
                results.extend(indices.iter().copied().zip(outcomes));
                progress(
                    done.fetch_add(indices.len(), Ordering::Relaxed) + indices.len(),
                    total,
                );
            }
            Ok::<_, StateError>(results)
        }
    };
    let mut results: Vec<Option<Result<(), TargetError>>> = (0..total).map(|_| None).collect();
    let mut failure = None;
    for phase in schedule(&operations, in_flight) {
        let phase_started = std::time::Instant::now();
        let mut chains =
            stream::iter(phase.into_iter().map(&run_chain)).buffer_unordered(in_flight);
        while let Some(chain) = chains.next().await {
            match chain {
                Ok(outcomes) => {
                    for (index, result) in outcomes {
                        results[index] = Some(result);
                    }
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        tracing::debug!(
            workspace = workspace_id,
            elapsed_ms = phase_started.elapsed().as_millis() as u64,
            "apply phase"
        );
        if let Some(error) = failure {
            return Err(error);
        }
    }
    if let Some(index) = results.iter().position(Option::is_none) {
        let operation = &operations[index];
        return Err(StateError(format!(
            "no outcome for {} {}",
            operation.kind().as_str(),
            operation.okta_id()
        )));
    }
    // The outcome lists operations in plan order, however they interleaved. The applied
    // ones stay in the plan's own buffer (a first sync applies 100k: a second buffer of
    // them would be tens of MB at the end of the cycle); the few failed ones move out.
    let mut applied = operations;
    let mut index = 0;
    let failed_operations: Vec<Operation> = applied
        .extract_if(.., |_| {
            let failed = matches!(results[index], Some(Err(_)));
            index += 1;
            failed
        })
        .collect();
    let errors = results.into_iter().filter_map(|r| r.and_then(Result::err));
    Ok(ApplyOutcome {
        applied,
        failed: failed_operations.into_iter().zip(errors).collect(),
    })
}

fn warn_failed(workspace_id: &str, operation: &Operation, result: &Result<(), TargetError>) {
    if let Err(error) = result {
        tracing::warn!(
            workspace = workspace_id,
            op = operation.kind().as_str(),
            okta_id = operation.okta_id(),
            error = %error,
            "operation failed"
        );
    }
}

/// The object an operation changes, and the phase it belongs to: users (0), then pushed
/// groups and their memberships (1), then objects written over inbound SCIM (2).
fn object(operation: &Operation) -> (u8, &str) {
    match operation {
        Operation::CreateUser { okta_id, .. }
        | Operation::AdoptUser { okta_id, .. }
        | Operation::UpdateUser { okta_id, .. }
        | Operation::DeactivateUser { okta_id, .. }
        | Operation::ReactivateUser { okta_id, .. } => (0, okta_id),
        Operation::CreateGroup { okta_group_id, .. }
        | Operation::RenameGroup { okta_group_id, .. }
        | Operation::AddMembers { okta_group_id, .. }
        | Operation::RemoveMembers { okta_group_id, .. }
        | Operation::UnlinkGroup { okta_group_id, .. } => (1, okta_group_id),
        Operation::PushUser(p) | Operation::PushGroup(p) => (2, &p.workspace_id),
        Operation::DeleteUser { workspace_id } | Operation::DeleteGroup { workspace_id } => {
            (2, workspace_id)
        }
    }
}

/// Splits a plan into phases run one after another, each a set of chains that may run
/// concurrently. With one operation in flight: one chain, the plan's own order.
fn schedule(operations: &[Operation], in_flight: usize) -> Vec<Vec<Chain>> {
    if in_flight <= 1 {
        return vec![vec![(0..operations.len()).collect()]];
    }
    let mut phases: Vec<Vec<Chain>> = Vec::new();
    let mut current: Option<u8> = None;
    let mut chain_of: HashMap<&str, usize> = HashMap::new();
    for (index, operation) in operations.iter().enumerate() {
        let (phase, key) = object(operation);
        if current != Some(phase) {
            current = Some(phase);
            chain_of.clear();
            phases.push(Vec::new());
        }
        let Some(chains) = phases.last_mut() else {
            continue;
        };
        match chain_of.get(key) {
            Some(&chain) => chains[chain].push(index),
            None => {
                chain_of.insert(key, chains.len());
                chains.push(vec![index]);
            }
        }
    }
    phases
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::model::{UserAttributes, WorkspaceState};
    use crate::reconcile::fakes::{FakeState, FakeTarget};

    /// A target taking 4 operations at once that checks the schedule as it runs: never two
    /// operations on one object at once, never a group operation while a user one runs.
    #[derive(Default)]
    struct Concurrent {
        inner: FakeTarget,
        running: Mutex<BTreeSet<(u8, String)>>,
        most_at_once: AtomicUsize,
        violations: Mutex<Vec<String>>,
    }

    impl WorkspaceTarget for Concurrent {
        fn max_in_flight(&self, _: &str) -> usize {
            4
        }

        async fn load(&self, ws: &str) -> Result<WorkspaceState, TargetError> {
            self.inner.load(ws).await
        }

        async fn execute(&self, ws: &str, operation: &Operation) -> Result<(), TargetError> {
            let (phase, key) = object(operation);
            let key = (phase, key.to_owned());
            if let Ok(mut running) = self.running.lock() {
                if (running.contains(&key) || running.iter().any(|(p, _)| *p != phase))
                    && let Ok(mut v) = self.violations.lock()
                {
                    v.push(format!("{key:?} started beside {running:?}"));
                }
                running.insert(key.clone());
                self.most_at_once.fetch_max(running.len(), Ordering::SeqCst);
            }
            // Let the other chains run: operations really overlap.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let result = self.inner.execute(ws, operation).await;
            if let Ok(mut running) = self.running.lock() {
                running.remove(&key);
            }
            result
        }
    }

    #[tokio::test]
    async fn concurrent_apply_keeps_phases_and_objects_in_order() {
        let mut ops: Vec<Operation> = (0..12).map(|i| create(&format!("u{i:02}"))).collect();
        ops.extend((0..3).map(|g| group(&format!("g{g}"))));
        ops.extend((0..3).map(|g| add(&format!("g{g}"), &format!("u{g:02}"))));
        ops.push(Operation::RenameGroup {
            okta_group_id: "g1".into(),
            workspace_id: "ws-g1".into(),
            from: "g1".into(),
            to: "renamed".into(),
        });
        let target = Concurrent::default();
        let state = FakeState::default();
        let outcome = apply(&target, &state, None, "ws", ops.clone(), &|_, _| {}).await;
        let Ok(outcome) = outcome else {
            panic!("apply failed: {outcome:?}");
        };
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
        assert_eq!(outcome.applied, ops, "the outcome lists the plan in order");
        assert_eq!(
            target
                .violations
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
            Vec::<String>::new()
        );
        let most = target.most_at_once.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} operations at once");

        let sequential = FakeTarget::default();
        let again = apply(
            &sequential,
            &FakeState::default(),
            None,
            "ws",
            ops,
            &|_, _| {},
        )
        .await;
        assert!(again.is_ok_and(|o| o.failed.is_empty()));
        let sorted = |state: &Mutex<WorkspaceState>| {
            let mut state = state.lock().map(|s| s.clone()).unwrap_or_default();
            state.users.sort_by(|a, b| a.id.cmp(&b.id));
            state.groups.sort_by(|a, b| a.id.cmp(&b.id));
            state
        };
        assert_eq!(
            sorted(&target.inner.state),
            sorted(&sequential.state),
            "the same workspace as applying one at a time"
        );
        let journal = state.journal.lock().map(|j| j.clone()).unwrap_or_default();
        assert!(
            journal.iter().all(|(_, outcome)| outcome.is_none()),
            "every outcome journaled: {journal:?}"
        );
    }

    fn create(okta_id: &str) -> Operation {
        Operation::CreateUser {
            okta_id: okta_id.into(),
            attributes: UserAttributes::default(),
        }
    }

    fn add(group: &str, member: &str) -> Operation {
        Operation::AddMembers {
            okta_group_id: group.into(),
            members: vec![member.into()],
        }
    }

    fn group(okta_group_id: &str) -> Operation {
        Operation::CreateGroup {
            okta_group_id: okta_group_id.into(),
            display_name: okta_group_id.into(),
            adopt: None,
        }
    }

    #[test]
    fn one_in_flight_keeps_the_plan_order() {
        let ops = vec![create("u1"), group("g1"), add("g1", "u1")];
        assert_eq!(schedule(&ops, 1), vec![vec![vec![0, 1, 2]]]);
    }

    #[test]
    fn users_before_groups_and_one_object_in_order() {
        let ops = vec![
            create("u1"),
            create("u2"),
            group("g1"),
            group("g2"),
            add("g1", "u1"),
            add("g2", "u2"),
        ];
        assert_eq!(
            schedule(&ops, 8),
            vec![vec![vec![0], vec![1]], vec![vec![2, 4], vec![3, 5]]]
        );
    }
}
