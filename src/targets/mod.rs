//! Workspace targets: where the engine's operations land. `local` keeps the workspace in
//! oktasync's store (served over inbound SCIM); `scim` provisions a downstream SCIM 2.0
//! service provider. `Targets` routes each workspace to its own.

pub mod local;
pub mod scim;

use std::collections::HashMap;

use crate::config::{TargetSettings, WorkspaceSettings};
use crate::model::WorkspaceState;
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{StateError, TargetError, WorkspaceTarget};
use crate::store::Store;

pub struct Targets {
    local: local::LocalTarget,
    scim: HashMap<String, scim::ScimTarget>,
}

impl Targets {
    pub fn new(store: &Store, workspaces: &[WorkspaceSettings]) -> Result<Self, String> {
        let mut scim = HashMap::new();
        for ws in workspaces {
            if let TargetSettings::Scim(settings) = &ws.target {
                let target = scim::ScimTarget::new(settings, store.clone())
                    .map_err(|e| format!("workspace {}: {e}", ws.policy.workspace_id))?;
                scim.insert(ws.policy.workspace_id.clone(), target);
            }
        }
        Ok(Self {
            local: local::LocalTarget::new(store.clone()),
            scim,
        })
    }

    /// Only the local store, for commands that never reach a downstream target.
    pub fn local_only(store: &Store) -> Self {
        Self {
            local: local::LocalTarget::new(store.clone()),
            scim: HashMap::new(),
        }
    }
}

impl WorkspaceTarget for Targets {
    async fn load(&self, workspace_id: &str) -> Result<WorkspaceState, TargetError> {
        match self.scim.get(workspace_id) {
            Some(target) => target.load(workspace_id).await,
            None => self.local.load(workspace_id).await,
        }
    }

    fn max_in_flight(&self, workspace_id: &str) -> usize {
        self.scim
            .get(workspace_id)
            .map_or(1, |target| target.max_in_flight(workspace_id))
    }

    async fn execute(&self, workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        match self.scim.get(workspace_id) {
            Some(target) => target.execute(workspace_id, operation).await,
            None => self.local.execute(workspace_id, operation).await,
        }
    }

    fn journals_in_place(&self, workspace_id: &str) -> bool {
        match self.scim.get(workspace_id) {
            Some(target) => target.journals_in_place(workspace_id),
            None => self.local.journals_in_place(workspace_id),
        }
    }

    async fn execute_journaled(
        &self,
        workspace_id: &str,
        cycle_id: Option<i64>,
        operation: &Operation,
    ) -> Result<Result<(), TargetError>, StateError> {
        match self.scim.get(workspace_id) {
            Some(target) => {
                target
                    .execute_journaled(workspace_id, cycle_id, operation)
                    .await
            }
            None => {
                self.local
                    .execute_journaled(workspace_id, cycle_id, operation)
                    .await
            }
        }
    }

    fn batch_size(&self, workspace_id: &str) -> usize {
        match self.scim.get(workspace_id) {
            Some(target) => target.batch_size(workspace_id),
            None => self.local.batch_size(workspace_id),
        }
    }

    async fn execute_batch(
        &self,
        workspace_id: &str,
        operations: &[&Operation],
    ) -> Vec<Result<(), TargetError>> {
        match self.scim.get(workspace_id) {
            Some(target) => target.execute_batch(workspace_id, operations).await,
            None => self.local.execute_batch(workspace_id, operations).await,
        }
    }
}
