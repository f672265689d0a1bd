//! `apply`: the only place that executes a plan. Each operation is journaled as pending
//! before it runs and marked applied or failed after; one operation's failure never stops
//! the others, and an operation that depends on a failed one (members of a user that could
//! not be created) fails on its own and is planned again next cycle.

use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{StateError, StateStore, TargetError, WorkspaceTarget};

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub applied: Vec<Operation>,
    pub failed: Vec<(Operation, TargetError)>,
}

/// Called after each operation, for progress display.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

pub async fn apply<T: WorkspaceTarget, S: StateStore>(
    target: &T,
    state: &S,
    cycle_id: Option<i64>,
    workspace_id: &str,
    operations: Vec<Operation>,
    progress: Progress<'_>,
) -> Result<ApplyOutcome, StateError> {
    let entries = state
        .journal_pending(cycle_id, workspace_id, &operations)
        .await?;
    let total = operations.len();
    let mut outcome = ApplyOutcome::default();
    for (done, (operation, entry)) in operations.into_iter().zip(entries).enumerate() {
        match target.execute(workspace_id, &operation).await {
            Ok(()) => {
                state.journal_outcome(entry, None).await?;
                outcome.applied.push(operation);
            }
            Err(error) => {
                tracing::warn!(
                    workspace = workspace_id,
                    op = operation.kind().as_str(),
                    okta_id = operation.okta_id(),
                    error = %error,
                    "operation failed"
                );
                state.journal_outcome(entry, Some(&error.message)).await?;
                outcome.failed.push((operation, error));
            }
        }
        progress(done + 1, total);
    }
    Ok(outcome)
}
