//! A run: one cycle across the pulled workspaces, under the cycle lock. Before it starts,
//! cycles that a dead holder left open are closed as abandoned (holding the lock proves
//! nobody runs them). Each cycle the engine begins is tagged at once with the run's id,
//! what started it, the instance and whether the scheduler meant a full sweep. When the run
//! ends, any of its cycles still open (it was stopped, or the store failed) is closed as
//! abandoned, so the cycles table never shows two cycles running at once. The engine sees
//! all this only through its `StateStore` port.

use super::locks::CycleLock;
use super::{Store, StoreError, now_millis, on_pool};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{HeldPlan, JournalEntryId, StateError, StateStore};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The daemon's scheduler (on the leader).
    Schedule,
    /// `POST /admin/sync`.
    Admin,
    /// `oktasync sync` or `plan` from the command line.
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Admin => "admin",
            Self::Cli => "cli",
        }
    }
}

/// A run in progress.
#[derive(Debug, Clone)]
pub struct Run {
    /// Short and random: it names the run in logs (the `cycle` span field) and records.
    pub id: String,
    pub trigger: Trigger,
    /// Whether the scheduler meant a full sweep (every read is full in this version).
    pub full: bool,
    pub instance: String,
}

impl Store {
    /// Opens a run. The lock is only asked for as proof that it is held.
    pub async fn begin_run(
        &self,
        _lock: &CycleLock,
        trigger: Trigger,
        full: bool,
        instance: &str,
    ) -> Result<Run, StoreError> {
        let now = now_millis();
        let closed = on_pool!(self, pool => sqlx::query(
            "UPDATE cycles SET finished_at = $1, outcome = 'abandoned' WHERE finished_at IS NULL",
        )
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        if closed > 0 {
            tracing::info!(
                cycles = closed,
                "closed cycles left open by a process that stopped: recorded as abandoned"
            );
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        Ok(Run {
            id: id.get(..12).unwrap_or(&id).to_owned(),
            trigger,
            full,
            instance: instance.to_owned(),
        })
    }

    /// Closes the run's cycles that are still open (a stopped or failed run) as abandoned;
    /// returns how many there were.
    pub async fn end_run(&self, run: &Run) -> Result<u64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query(
            "UPDATE cycles SET finished_at = $2, outcome = 'abandoned' WHERE run_id = $1 AND finished_at IS NULL",
        )
        .bind(&run.id)
        .bind(now_millis())
        .execute(pool)
        .await?
        .rows_affected()))
    }

    async fn tag_cycle(&self, cycle_id: i64, run: &Run) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE cycles SET run_id = $2, triggered_by = $3, instance = $4, full_sweep = $5 WHERE id = $1",
        )
        .bind(cycle_id)
        .bind(&run.id)
        .bind(run.trigger.as_str())
        .bind(&run.instance)
        .bind(run.full)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

impl Run {
    /// The engine's state port for this run: the store, tagging each cycle it begins.
    pub fn state(&self, store: &Store) -> RunState {
        RunState {
            store: store.clone(),
            run: self.clone(),
        }
    }
}

/// The store as the engine's `StateStore` during a run.
pub struct RunState {
    store: Store,
    run: Run,
}

impl StateStore for RunState {
    async fn begin_cycle(&self, workspace_id: &str, dry_run: bool) -> Result<i64, StateError> {
        let id = self.store.begin_cycle(workspace_id, dry_run).await?;
        self.store.tag_cycle(id, &self.run).await?;
        Ok(id)
    }

    async fn journal_pending(
        &self,
        cycle_id: Option<i64>,
        workspace_id: &str,
        operations: &[Operation],
    ) -> Result<Vec<JournalEntryId>, StateError> {
        self.store
            .journal_pending(cycle_id, workspace_id, operations)
            .await
    }

    async fn journal_outcomes(
        &self,
        outcomes: &[(JournalEntryId, Option<&str>)],
    ) -> Result<(), StateError> {
        self.store.journal_outcomes(outcomes).await
    }

    async fn finish_cycle(
        &self,
        cycle_id: i64,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        self.store.finish_cycle(cycle_id, outcome, summary).await
    }

    async fn hold(
        &self,
        workspace_id: &str,
        deactivations: &[String],
    ) -> Result<HeldPlan, StateError> {
        self.store.hold(workspace_id, deactivations).await
    }

    async fn consume_hold(&self, id: &str) -> Result<(), StateError> {
        self.store.consume_hold(id).await
    }
}
