//! Stopping a running cycle at a clean point. The engine runs a cycle to its end and cannot
//! be asked to stop, so the daemon hands it a source and a target wrapped in a `Gate`: once
//! the gate closes (SIGTERM), an Okta read in progress is dropped (reads change nothing), an
//! operation in flight finishes and has its outcome journaled, and the next operation never
//! starts: the wrapper parks, and the scheduler drops the parked cycle. Its remaining
//! operations stay pending in the journal, and the next cycle supersedes and re-plans them.

use tokio_util::sync::CancellationToken;

use crate::model::{OktaSnapshot, WorkspaceState};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{OktaSource, ReadRequest, TargetError, WorkspaceTarget};

#[derive(Clone, Default)]
pub struct Gate {
    closed: CancellationToken,
    parked: CancellationToken,
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

    /// Never returns: the scheduler drops the future.
    async fn park<T>(&self) -> T {
        self.parked.cancel();
        std::future::pending().await
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

    async fn execute(&self, workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        if self.gate.closed.is_cancelled() {
            return self.gate.park().await;
        }
        self.inner.execute(workspace_id, operation).await
    }
}
