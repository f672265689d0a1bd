//! What operators and the scheduler read back from cycles and the journal: recent cycles,
//! where the schedule resumes after a restart or a failover (the last completed run and the
//! last full sweep), objects whose latest operation failed, and the journal since a time.

use super::{Store, StoreError, on_pool};

/// One row of the cycles table (one workspace in one run).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CycleRecord {
    pub id: i64,
    pub workspace_id: String,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub summary: Option<String>,
    pub run_id: Option<String>,
    pub triggered_by: Option<String>,
    pub instance: Option<String>,
    pub full_sweep: bool,
}

/// An object whose latest finished operation failed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailingObject {
    pub workspace_id: String,
    pub okta_id: String,
    pub op: String,
    pub source: String,
    pub error: Option<String>,
    pub failed_at: Option<i64>,
    /// Failures of this operation on this object since it last succeeded.
    pub failures: i64,
}

/// One journal entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JournalRecord {
    pub id: i64,
    pub cycle_id: Option<i64>,
    pub source: String,
    pub workspace_id: String,
    pub op: String,
    pub okta_id: String,
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// Where the schedule stands, as recorded (Unix milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleAnchor {
    /// Start of the latest non-dry cycle that completed (not abandoned, not still open).
    pub last_completed_start: Option<i64>,
    /// Whether the latest non-dry cycle is that one (false: it was abandoned or cut off).
    pub latest_completed: bool,
    /// Start of the latest complete full sweep.
    pub last_full_start: Option<i64>,
}

const CYCLE_COLUMNS: &str = "id, workspace_id, dry_run, started_at, finished_at, outcome, summary, \
     run_id, triggered_by, instance, full_sweep";

impl Store {
    /// The latest cycles, newest first.
    pub async fn recent_cycles(&self, limit: i64) -> Result<Vec<CycleRecord>, StoreError> {
        let sql = format!("SELECT {CYCLE_COLUMNS} FROM cycles ORDER BY id DESC LIMIT $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(pool)
            .await?),
        )
    }

    /// Every cycle started at or after `since`, oldest first (for tests and audits).
    pub async fn cycles_since(&self, since: i64) -> Result<Vec<CycleRecord>, StoreError> {
        let sql = format!(
            "SELECT {CYCLE_COLUMNS} FROM cycles WHERE started_at >= $1 ORDER BY started_at, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .fetch_all(pool)
            .await?),
        )
    }

    pub async fn schedule_anchor(&self) -> Result<ScheduleAnchor, StoreError> {
        let (latest, completed, full): (Option<(Option<String>,)>, Option<i64>, Option<i64>) = on_pool!(self, pool => {
            let latest = sqlx::query_as(
                "SELECT outcome FROM cycles WHERE dry_run = FALSE ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?;
            let completed = sqlx::query_scalar(
                "SELECT MAX(started_at) FROM cycles WHERE dry_run = FALSE \
                 AND outcome IS NOT NULL AND outcome <> 'abandoned'",
            )
            .fetch_one(pool)
            .await?;
            let full = sqlx::query_scalar(
                "SELECT MAX(started_at) FROM cycles WHERE dry_run = FALSE AND full_sweep = TRUE \
                 AND outcome IN ('ok', 'held')",
            )
            .fetch_one(pool)
            .await?;
            (latest, completed, full)
        });
        Ok(ScheduleAnchor {
            last_completed_start: completed,
            latest_completed: latest
                .and_then(|(outcome,)| outcome)
                .is_some_and(|o| o != "abandoned"),
            last_full_start: full,
        })
    }

    /// Objects whose latest finished operation failed, most recent first, with the error.
    pub async fn failing_objects(&self, limit: i64) -> Result<Vec<FailingObject>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as(
            "SELECT j.workspace_id, j.okta_id, j.op, j.source, j.error, j.finished_at AS failed_at, \
               (SELECT COUNT(*) FROM journal f WHERE f.workspace_id = j.workspace_id \
                  AND f.okta_id = j.okta_id AND f.op = j.op AND f.status = 'failed' \
                  AND f.id > COALESCE((SELECT MAX(a.id) FROM journal a \
                     WHERE a.workspace_id = j.workspace_id AND a.okta_id = j.okta_id \
                     AND a.op = j.op AND a.status = 'applied'), 0)) AS failures \
             FROM journal j WHERE j.status = 'failed' \
             AND j.id = (SELECT MAX(m.id) FROM journal m WHERE m.workspace_id = j.workspace_id \
                AND m.okta_id = j.okta_id AND m.status IN ('applied', 'failed')) \
             ORDER BY j.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Journal entries created at or after `since`: the newest `limit`, oldest first.
    pub async fn journal_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let mut rows: Vec<JournalRecord> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, cycle_id, source, workspace_id, op, okta_id, status, error, created_at, finished_at \
             FROM journal WHERE created_at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.reverse();
        Ok(rows)
    }
}

/// Unix milliseconds as RFC 3339 (UTC), for people and JSON alike.
pub fn format_millis(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
