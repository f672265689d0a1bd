//! The `local` target: the workspace lives in oktasync's store.

use crate::model::WorkspaceState;
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{TargetError, WorkspaceTarget};
use crate::store::{Store, StoreError};

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
    let retryable = matches!(e, StoreError::Query(_) | StoreError::Connect(_));
    TargetError {
        message: e.to_string(),
        retryable,
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
}
