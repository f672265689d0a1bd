//! The `local` target: the workspace lives in oktasync's store.

use crate::model::WorkspaceState;
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{StateError, TargetError, TargetErrorKind, WorkspaceTarget};
use crate::store::{Store, StoreError};

/// Operations written per transaction: large enough that commits stop dominating a first
/// sync, small enough that a SCIM write waits only milliseconds for the write lock.
const BATCH: usize = 200;

#[derive(Debug, Clone)]
pub struct LocalTarget {
    store: Store,
}

impl LocalTarget {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn target_error(e: StoreError) -> TargetError {
    let kind = match e {
        StoreError::Query(_) | StoreError::Connect(_) => TargetErrorKind::Transient,
        StoreError::NotFound(_) => TargetErrorKind::NotFound,
        StoreError::Conflict(_) => TargetErrorKind::Conflict,
        StoreError::VersionMismatch(_) => TargetErrorKind::VersionMismatch,
        StoreError::Url(_) | StoreError::Migrate(_) | StoreError::Invalid(_) => {
            TargetErrorKind::Invalid
        }
    };
    TargetError {
        message: e.to_string(),
        kind,
    }
}

impl WorkspaceTarget for LocalTarget {
    async fn load(&self, workspace_id: &str) -> Result<WorkspaceState, TargetError> {
        self.store
            .load_workspace(workspace_id)
            .await
            .map_err(target_error)
    }

    async fn execute(&self, workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        self.store
            .apply_operation(workspace_id, operation)
            .await
            .map_err(target_error)
    }

    fn journals_in_place(&self, _workspace_id: &str) -> bool {
        true
    }

    async fn execute_journaled(
        &self,
        workspace_id: &str,
        cycle_id: Option<i64>,
        operation: &Operation,
    ) -> Result<Result<(), TargetError>, StateError> {
        match self
            .store
            .apply_journaled(workspace_id, cycle_id, operation)
            .await
        {
            Ok(result) => Ok(result.map_err(target_error)),
            Err(journal) => Err(StateError(journal.to_string())),
        }
    }

    fn batch_size(&self, _workspace_id: &str) -> usize {
        BATCH
    }

    async fn execute_batch(
        &self,
        workspace_id: &str,
        operations: &[&Operation],
    ) -> Vec<Result<(), TargetError>> {
        self.store
            .apply_operations(workspace_id, operations)
            .await
            .into_iter()
            .map(|result| result.map_err(target_error))
            .collect()
    }
}
