//! The engine's own state in the store: cycles, the operation journal and held plans
//! (the `StateStore` port).

use sha2::{Digest, Sha256};

use super::{BeginWrite, Store, StoreError, now_millis, on_pool};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{HeldPlan, JournalEntryId, StateError, StateStore};
use crate::render;

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        StateError(e.to_string())
    }
}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> Self {
        StateError(e.to_string())
    }
}

/// A held plan's id: stable for one workspace and one set of deactivations.
fn held_plan_id(workspace_id: &str, deactivations: &[String]) -> String {
    let mut sorted: Vec<&String> = deactivations.iter().collect();
    sorted.sort();
    let mut hash = Sha256::new();
    hash.update(workspace_id.as_bytes());
    for id in sorted {
        hash.update([0]);
        hash.update(id.as_bytes());
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// id, workspace, deactivations (JSON list), approved at, consumed at.
type HeldPlanRow = (String, String, String, Option<i64>, Option<i64>);

/// A held plan as listed by `plan` and `status`.
#[derive(Debug, Clone)]
pub struct HeldPlanRecord {
    pub id: String,
    pub workspace_id: String,
    pub deactivations: usize,
    pub approved: bool,
    pub consumed: bool,
}

impl Store {
    /// Approves a held plan by id; false when no such unconsumed plan exists.
    pub async fn approve_held_plan(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE held_plans SET approved_at = $2 WHERE id = $1 AND consumed_at IS NULL",
        )
        .bind(id)
        .bind(now_millis())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done > 0)
    }

    pub async fn held_plans(&self) -> Result<Vec<HeldPlanRecord>, StoreError> {
        let rows: Vec<HeldPlanRow> = on_pool!(self, pool =>
            sqlx::query_as(
                "SELECT id, workspace_id, deactivations, approved_at, consumed_at FROM held_plans ORDER BY created_at",
            )
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(
                |(id, workspace_id, list, approved, consumed)| HeldPlanRecord {
                    deactivations: serde_json::from_str::<Vec<String>>(&list)
                        .map(|l| l.len())
                        .unwrap_or(0),
                    id,
                    workspace_id,
                    approved: approved.is_some(),
                    consumed: consumed.is_some(),
                },
            )
            .collect())
    }

    /// Journal entries by status, for tests and `history`.
    pub async fn journal_counts(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as(
            "SELECT status, COUNT(*) FROM journal WHERE workspace_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(workspace_id)
        .fetch_all(pool)
        .await?))
    }
}

/// Journal rows written per statement (9 parameters each, far below either backend's limit).
const JOURNAL_ROWS: usize = 500;

impl StateStore for Store {
    async fn begin_cycle(&self, workspace_id: &str, dry_run: bool) -> Result<i64, StateError> {
        let now = now_millis();
        let id = on_pool!(self, pool => {
            let superseded = sqlx::query(
                "UPDATE journal SET status = 'superseded', finished_at = $2 WHERE workspace_id = $1 AND status = 'pending'",
            )
            .bind(workspace_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            if superseded > 0 {
                tracing::info!(workspace = workspace_id, superseded, "operations of an interrupted cycle will be re-planned");
            }
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO cycles (workspace_id, dry_run, started_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(workspace_id)
            .bind(dry_run)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    async fn journal_pending(
        &self,
        cycle_id: Option<i64>,
        workspace_id: &str,
        operations: &[Operation],
    ) -> Result<Vec<JournalEntryId>, StateError> {
        let now = now_millis();
        let source = if cycle_id.is_some() { "pull" } else { "scim" };
        let ids = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut ids = vec![0; operations.len()];
            // Many rows per statement: a first sync journals 100k operations.
            for (chunk_index, chunk) in operations.chunks(JOURNAL_ROWS).enumerate() {
                let offset = chunk_index * JOURNAL_ROWS;
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO journal (cycle_id, source, workspace_id, seq, op, okta_id, detail, status, created_at) ",
                );
                insert.push_values(chunk.iter().enumerate(), |mut row, (i, op)| {
                    row.push_bind(cycle_id)
                        .push_bind(source)
                        .push_bind(workspace_id)
                        .push_bind(i64::try_from(offset + i).unwrap_or(i64::MAX))
                        .push_bind(op.kind().as_str())
                        .push_bind(op.okta_id())
                        .push_bind(render::operation_json(op).to_string())
                        .push_bind("pending")
                        .push_bind(now);
                });
                // Matched by `seq`: the order of RETURNING rows is not promised.
                insert.push(" RETURNING id, seq");
                let rows: Vec<(i64, i64)> = insert.build_query_as().fetch_all(&mut *tx).await?;
                for (id, seq) in rows {
                    if let Some(slot) = usize::try_from(seq).ok().and_then(|s| ids.get_mut(s)) {
                        *slot = id;
                    }
                }
            }
            if ids.contains(&0) {
                return Err(StateError("the journal did not return every operation's entry".into()));
            }
            tx.commit().await?;
            ids
        });
        Ok(ids)
    }

    async fn journal_outcomes(
        &self,
        outcomes: &[(JournalEntryId, Option<&str>)],
    ) -> Result<(), StateError> {
        let now = now_millis();
        let applied: Vec<JournalEntryId> = outcomes
            .iter()
            .filter(|(_, error)| error.is_none())
            .map(|(entry, _)| *entry)
            .collect();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Applied ones in one statement per chunk; failures carry their own error.
            for chunk in applied.chunks(JOURNAL_ROWS) {
                let mut update = sqlx::QueryBuilder::new("UPDATE journal SET status = 'applied', error = NULL, finished_at = ");
                update.push_bind(now).push(" WHERE id IN (");
                let mut ids = update.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                update.push(")");
                update.build().execute(&mut *tx).await?;
            }
            for (entry, error) in outcomes.iter().filter(|(_, error)| error.is_some()) {
                sqlx::query("UPDATE journal SET status = 'failed', error = $2, finished_at = $3 WHERE id = $1")
                    .bind(entry)
                    .bind(error)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn finish_cycle(
        &self,
        cycle_id: i64,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE cycles SET finished_at = $2, outcome = $3, summary = $4 WHERE id = $1",
        )
        .bind(cycle_id)
        .bind(now_millis())
        .bind(outcome)
        .bind(summary)
        .execute(pool)
        .await.map(|_| ()))?;
        Ok(())
    }

    async fn hold(
        &self,
        workspace_id: &str,
        deactivations: &[String],
    ) -> Result<HeldPlan, StateError> {
        let id = held_plan_id(workspace_id, deactivations);
        let list = serde_json::to_string(deactivations).map_err(|e| StateError(e.to_string()))?;
        let approved: Option<i64> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO held_plans (id, workspace_id, deactivations, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET consumed_at = NULL, \
                 approved_at = CASE WHEN held_plans.consumed_at IS NULL THEN held_plans.approved_at ELSE NULL END",
            )
            .bind(&id)
            .bind(workspace_id)
            .bind(&list)
            .bind(now_millis())
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT approved_at FROM held_plans WHERE id = $1")
                .bind(&id)
                .fetch_one(pool)
                .await?
        });
        Ok(HeldPlan {
            id,
            approved: approved.is_some(),
        })
    }

    async fn consume_hold(&self, id: &str) -> Result<(), StateError> {
        on_pool!(self, pool => sqlx::query("UPDATE held_plans SET consumed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_millis())
            .execute(pool)
            .await.map(|_| ()))?;
        Ok(())
    }
}
