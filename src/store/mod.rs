//! The store: SQLite (embedded default, WAL) or PostgreSQL (multi-replica), through sqlx.
//! One implementation serves both: every query is written once in SQL both dialects accept
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`) and `on_pool!` runs it on the concrete
//! pool, so each backend is type-checked on its own. Migrations live in one folder per
//! backend. The store owns the workspace state of the `local` target, the journal, cycles
//! and held plans, and the locks that coordinate processes (`locks`).

mod checkpoint;
pub mod history;
pub mod locks;
pub mod runs;
pub mod scim;
pub mod snapshot;
mod state;
mod workspace;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.url: {0}")]
    Url(String),
    #[error("cannot open the store: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    VersionMismatch(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("uniqueness: {}", db.message()))
            }
            _ => StoreError::Query(e),
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Sqlite($pool) => $body,
            crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Opens a write transaction. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a transaction that reads and then writes would otherwise fail with
/// SQLITE_BUSY, without waiting, when another writer committed in between. SQLite has one
/// writer at a time, and its busy handler waits by sleeping in steps that grow to 100 ms:
/// this process's writers therefore queue for their turn first (in order, without
/// sleeping), and only another process's writer meets the busy handler.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<WriteTx<Self::Db>, sqlx::Error>> + Send;
}

/// A write transaction, holding this process's SQLite write turn until it ends. Derefs to
/// the connection, like `sqlx::Transaction`.
pub(crate) struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// This process's SQLite writers, in turn.
static SQLITE_WRITE_TURN: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

/// Waits for this process's SQLite write turn (held until the guard drops).
pub(crate) async fn sqlite_write_turn() -> tokio::sync::OwnedMutexGuard<()> {
    SQLITE_WRITE_TURN.clone().lock_owned().await
}

/// A write transaction in a turn already taken.
pub(crate) async fn begin_sqlite_write(
    pool: &SqlitePool,
    turn: tokio::sync::OwnedMutexGuard<()>,
) -> Result<WriteTx<sqlx::Sqlite>, sqlx::Error> {
    Ok(WriteTx {
        tx: pool.begin_with("BEGIN IMMEDIATE").await?,
        _turn: Some(turn),
    })
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<WriteTx<sqlx::Sqlite>, sqlx::Error> {
        begin_sqlite_write(self, sqlite_write_turn().await).await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<WriteTx<sqlx::Postgres>, sqlx::Error> {
        Ok(WriteTx {
            tx: self.begin().await?,
            _turn: None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Single journaled writes waiting for this database's SQLite write turn.
    queued: std::sync::Arc<std::sync::Mutex<Vec<workspace::QueuedWrite>>>,
    /// SQLite: checkpoints the WAL while any clone of the store is open.
    checkpointer: Option<std::sync::Arc<checkpoint::Checkpointer>>,
}

/// A new id for a workspace user or group: a UUIDv7, whose leading bits are its creation
/// time. Ids created together sort together, so each new row goes at the right edge of the
/// primary key's index instead of into a random page of it: with v4 ids every create
/// dirtied a page of its own there, which the WAL and then the checkpoint each wrote whole
/// (a disk-bound share of `POST /Users`). The time in it is the `meta.created` SCIM already
/// shows.
pub fn new_object_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The time in Unix epoch milliseconds, as the store records it.
pub fn now_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

impl Store {
    /// Opens `sqlite://path` (created if missing, WAL) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(format!("{url}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // `checkpoint` does it, outside any commit.
                .pragma("wal_autocheckpoint", "0")
                // Rows cross from SQLite's thread to ours through this channel: at the default
                // 50 each few rows cost both threads a wake-up (loading a 100k workspace).
                .row_buffer_size(4096);
            let path = rest.trim_start_matches("//");
            if let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path))
                .parent()
                .filter(|p| !p.as_os_str().is_empty() && !path.starts_with(":memory:"))
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Url(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::Connect)?;
            let checkpointer = checkpoint::Checkpointer::start(&options)
                .await
                .map_err(StoreError::Connect)?;
            Ok(Self {
                pool: Pool::Sqlite(pool),
                queued: Default::default(),
                checkpointer: Some(std::sync::Arc::new(checkpointer)),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(format!("invalid PostgreSQL URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(StoreError::Connect)?;
            Ok(Self {
                pool: Pool::Postgres(pool),
                queued: Default::default(),
                checkpointer: None,
            })
        } else {
            Err(StoreError::Url(
                "must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Applies the backend's pending migrations (also done on every start).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Pool::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop();
        }
        on_pool!(self, pool => pool.close().await);
    }
}

#[cfg(test)]
mod tests {
    /// What the write path counts on: ids made one after another (many within one
    /// millisecond) are distinct and sort, as text, in the order they were made.
    #[test]
    fn object_ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..10_000).map(|_| super::new_object_id()).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids out of creation order"
        );
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    }
}
