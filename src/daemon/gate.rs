//! Stopping a running cycle at a clean point. The engine runs a cycle to its end and cannot
//! be asked to stop, so the daemon hands it a source and a target wrapped in a `Gate`: once
//! the gate closes (SIGTERM), an Okta read in progress is dropped (reads change nothing), an
//! operation in flight finishes and has its outcome journaled, and the next operation never
//! starts: the wrapper parks, and the scheduler drops the parked cycle. Its remaining
//! operations stay pending in the journal, and the next cycle supersedes and re-plans them.
//!
//! A target taking several operations at once has several in flight: an operation counts
//! from the target's `execute` to its outcome in the journal (the state store is wrapped
//! too), and the gate reports parked only once none is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::model::{OktaSnapshot, WorkspaceState};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{
    HeldPlan, JournalEntryId, OktaSource, ReadRequest, StateError, StateStore, TargetError,
    WorkspaceTarget,
};

#[derive(Clone, Default)]
pub struct Gate {
    closed: CancellationToken,
    parked: CancellationToken,
    in_flight: Arc<InFlight>,
}

/// Operations started on the target whose outcome is not journaled yet.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl Gate {
    /// Lets nothing new start.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once the cycle has stopped at a clean point.
    pub async fn parked(&self) {
        self.parked.cancelled().await;
    }

    /// Never returns: the scheduler drops the future once every operation in flight has
    /// its outcome journaled.
    async fn park<T>(&self) -> T {
        loop {
            // Registered before the check, so a finish in between still wakes it.
            let idle = self.in_flight.idle.notified();
            if self.in_flight.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        self.parked.cancel();
        std::future::pending().await
    }

    fn started(&self, operations: usize) {
        self.in_flight.count.fetch_add(operations, Ordering::SeqCst);
    }

    fn finished(&self, operations: usize) {
        // Saturating: an outcome journaled for an operation this gate did not see start
        // (none today) must not wrap the count.
        let _ = self
            .in_flight
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(operations))
            });
        self.in_flight.idle.notify_waiters();
    }

    pub fn wrap<I>(&self, inner: I) -> Gated<I> {
        Gated {
            inner,
            gate: self.clone(),
        }
    }
}

pub struct Gated<I> {
    inner: I,
    gate: Gate,
}

impl<I> Gated<I> {
    pub fn inner(&self) -> &I {
        &self.inner
    }
}

impl<S: OktaSource> OktaSource for Gated<S> {
    async fn read(&self, request: ReadRequest<'_>) -> OktaSnapshot {
        tokio::select! {
            biased;
            _ = self.gate.closed.cancelled() => self.gate.park().await,
            snapshot = self.inner.read(request) => snapshot,
        }
    }
}

impl<T: WorkspaceTarget> WorkspaceTarget for Gated<T> {
    async fn load(&self, workspace_id: &str) -> Result<WorkspaceState, TargetError> {
        if self.gate.closed.is_cancelled() {
            return self.gate.park().await;
        }
        self.inner.load(workspace_id).await
    }

    fn max_in_flight(&self, workspace_id: &str) -> usize {
        self.inner.max_in_flight(workspace_id)
    }

    async fn execute(&self, workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        if self.gate.closed.is_cancelled() {
            return self.gate.park().await;
        }
        self.gate.started(1);
        self.inner.execute(workspace_id, operation).await
    }

    fn journals_in_place(&self, workspace_id: &str) -> bool {
        self.inner.journals_in_place(workspace_id)
    }

    async fn execute_journaled(
        &self,
        workspace_id: &str,
        cycle_id: Option<i64>,
        operation: &Operation,
    ) -> Result<Result<(), TargetError>, StateError> {
        if self.gate.closed.is_cancelled() {
            return self.gate.park().await;
        }
        // Journaled with the write itself: in flight until it returns.
        self.gate.started(1);
        let result = self
            .inner
            .execute_journaled(workspace_id, cycle_id, operation)
            .await;
        self.gate.finished(1);
        result
    }

    fn batch_size(&self, workspace_id: &str) -> usize {
        self.inner.batch_size(workspace_id)
    }

    async fn execute_batch(
        &self,
        workspace_id: &str,
        operations: &[&Operation],
    ) -> Vec<Result<(), TargetError>> {
        if self.gate.closed.is_cancelled() {
            return self.gate.park().await;
        }
        self.gate.started(operations.len());
        self.inner.execute_batch(workspace_id, operations).await
    }
}

/// The state store of a gated cycle: a journaled outcome ends an operation in flight.
impl<S: StateStore> StateStore for Gated<S> {
    async fn begin_cycle(&self, workspace_id: &str, dry_run: bool) -> Result<i64, StateError> {
        self.inner.begin_cycle(workspace_id, dry_run).await
    }

    async fn journal_pending(
        &self,
        cycle_id: Option<i64>,
        workspace_id: &str,
        operations: &[Operation],
    ) -> Result<Vec<JournalEntryId>, StateError> {
        self.inner
            .journal_pending(cycle_id, workspace_id, operations)
            .await
    }

    async fn journal_outcomes(
        &self,
        outcomes: &[(JournalEntryId, Option<&str>)],
    ) -> Result<(), StateError> {
        let result = self.inner.journal_outcomes(outcomes).await;
        self.gate.finished(outcomes.len());
        result
    }

    async fn finish_cycle(
        &self,
        cycle_id: i64,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        self.inner.finish_cycle(cycle_id, outcome, summary).await
    }

    async fn hold(
        &self,
        workspace_id: &str,
        deactivations: &[String],
    ) -> Result<HeldPlan, StateError> {
        self.inner.hold(workspace_id, deactivations).await
    }

    async fn consume_hold(&self, id: &str) -> Result<(), StateError> {
        self.inner.consume_hold(id).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::UserAttributes;
    use crate::reconcile::apply::apply;
    use crate::reconcile::fakes::FakeState;

    /// Takes four operations at once, each needing 50 ms.
    #[derive(Default)]
    struct Slow {
        started: AtomicUsize,
    }

    impl WorkspaceTarget for Slow {
        fn max_in_flight(&self, _: &str) -> usize {
            4
        }

        async fn load(&self, _: &str) -> Result<WorkspaceState, TargetError> {
            Ok(WorkspaceState::default())
        }

        async fn execute(&self, _: &str, _: &Operation) -> Result<(), TargetError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn parks_only_once_every_operation_in_flight_is_journaled() {
        let gate = Gate::default();
        let target = gate.wrap(Slow::default());
        let state = gate.wrap(FakeState::default());
        let ops: Vec<Operation> = (0..12)
            .map(|i| Operation::CreateUser {
                okta_id: format!("u{i:02}"),
                attributes: UserAttributes::default(),
            })
            .collect();
        let parked = {
            let gate = gate.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                gate.close();
                gate.parked().await;
            }
        };
        tokio::select! {
            result = apply(&target, &state, None, "ws", ops, &|_, _| {}) => {
                panic!("apply ran to its end through a closed gate: {result:?}")
            }
            () = parked => {}
        }
        let started = target.inner().started.load(Ordering::SeqCst);
        let journal = state
            .inner()
            .journal
            .lock()
            .map(|j| j.clone())
            .unwrap_or_default();
        let applied = journal
            .iter()
            .filter(|(_, outcome)| outcome.is_none())
            .count();
        assert_eq!(started, 4, "the first four ran, no other started");
        assert_eq!(
            applied, started,
            "each one that ran has its outcome journaled"
        );
        assert_eq!(journal.len() - applied, 8, "the rest stay pending");
    }
}
