//! Coordination between oktasync processes through the store: leadership (the one daemon
//! that runs scheduled cycles) and the cycle lock (one cycle at a time, whoever starts it: a
//! daemon's scheduler, `POST /admin/sync`, `oktasync sync` or `plan`). Both locks die with
//! their holder, so a killed process never blocks the next one:
//! - PostgreSQL: session advisory locks, each on its own dedicated connection (never a pool
//!   checkout), which the server releases as soon as that connection closes. The leader
//!   pings its connection every tick: a failed ping is an immediate step-down.
//! - SQLite (one host by nature): `flock`ed files next to the database, which the kernel
//!   releases when the process exits. The daemon's file is held for its whole life, so a
//!   second daemon on the same database is refused at start.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgAdvisoryLock, PgAdvisoryLockGuard, PgConnectOptions};
use sqlx::{Connection, Either, PgConnection};

use super::{Pool, Store, StoreError};

const LEADER_LOCK: &str = "oktasync-leader";
const CYCLE_LOCK: &str = "oktasync-cycle";
/// How long a lock query or a leader's ping may take before the connection counts as lost.
const LOCK_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a waiting `lock_cycles` tries again.
const CYCLE_LOCK_POLL: Duration = Duration::from_millis(250);

/// Who holds a lock, as far as the store can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// `host/pid` of the holding process.
    pub instance: String,
    /// Extra detail: the PostgreSQL client address, or the SQLite lock file's record.
    pub detail: String,
}

/// Why a daemon cannot take part in leadership at all.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// SQLite: another daemon holds this database.
    #[error(
        "another oktasync daemon is running on this SQLite database ({holder}; lock file {path}): \
         SQLite allows one daemon per database. Stop the other one, or use a PostgreSQL store \
         to run several replicas"
    )]
    AlreadyRunning { holder: String, path: String },
    #[error("cannot take the daemon lock file {path}: {message}")]
    LockFile { path: String, message: String },
}

/// The result of one leadership check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderCheck {
    Leading,
    Following,
    /// This process led until now and no longer does: stop applying at once.
    Lost(String),
}

/// This process's side of the leader election.
pub struct Leadership {
    inner: LeaderInner,
}

enum LeaderInner {
    /// SQLite: the daemon lock file, held for the process's life (None: in-memory database).
    Single(Option<File>),
    Postgres(Box<PgLeader>),
}

struct PgLeader {
    options: PgConnectOptions,
    lock: PgAdvisoryLock,
    /// A connection that tried and failed to take the lock, kept for the next try.
    idle: Option<PgConnection>,
    held: Option<PgAdvisoryLockGuard<PgConnection>>,
    /// When a failure to connect was last logged (a follower retries every tick).
    last_warned: Option<Instant>,
}

/// The process's identity in locks and cycle records: `host/pid`.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}

/// A lock file next to the SQLite database; None for an in-memory database, which no
/// other process can open anyway.
fn lock_file_path(store: &Store, suffix: &str) -> Option<PathBuf> {
    let Pool::Sqlite(pool) = &store.pool else {
        return None;
    };
    let options = pool.connect_options();
    let file = options.get_filename();
    let name = file.to_string_lossy();
    if name.is_empty() || name.starts_with("file:") || name.contains(":memory:") {
        return None;
    }
    let mut path = file.as_os_str().to_owned();
    path.push(suffix);
    Some(PathBuf::from(path))
}

fn open_lock_file(path: &Path) -> Result<File, std::io::Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Takes an exclusive lock on a file without waiting: Ok(None) when another holds it.
fn try_lock_file(path: &Path, record: &str) -> Result<Option<File>, std::io::Error> {
    let mut file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => {
            // The record is for people (`status`, the refusal message); the lock is the flock.
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(record.as_bytes())?;
            Ok(Some(file))
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Who holds a lock file: None when it does not exist or nobody holds it.
fn lock_file_holder(path: &Path) -> Option<LockHolder> {
    let mut file = File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut record = String::new();
            let _ = file.read_to_string(&mut record);
            let instance = record
                .split_whitespace()
                .find_map(|w| w.strip_prefix("instance="))
                .unwrap_or("unknown")
                .to_owned();
            Some(LockHolder {
                instance,
                detail: record.trim().to_owned(),
            })
        }
        Err(TryLockError::Error(_)) => None,
    }
}

fn lock_record(instance: &str) -> String {
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!("instance={instance} since={since}\n")
}

fn pg_options(store: &Store, instance: &str, role: &str) -> Option<PgConnectOptions> {
    match &store.pool {
        // The application name lets `status` (and a DBA) see which instance holds a lock.
        Pool::Postgres(pool) => Some(
            (*pool.connect_options())
                .clone()
                .application_name(&format!("oktasync {role} {instance}")),
        ),
        Pool::Sqlite(_) => None,
    }
}

impl Store {
    /// Joins the leader election. On SQLite this takes the daemon lock file, and fails when
    /// another daemon holds it; on PostgreSQL it never fails (the first `check` competes).
    pub fn leadership(&self, instance: &str) -> Result<Leadership, LeaderError> {
        if let Some(options) = pg_options(self, instance, "leader") {
            return Ok(Leadership {
                inner: LeaderInner::Postgres(Box::new(PgLeader {
                    options,
                    lock: PgAdvisoryLock::new(LEADER_LOCK),
                    idle: None,
                    held: None,
                    last_warned: None,
                })),
            });
        }
        let Some(path) = lock_file_path(self, "-daemon.lock") else {
            return Ok(Leadership {
                inner: LeaderInner::Single(None),
            });
        };
        let shown = path.display().to_string();
        match try_lock_file(&path, &lock_record(instance)) {
            Ok(Some(file)) => Ok(Leadership {
                inner: LeaderInner::Single(Some(file)),
            }),
            Ok(None) => Err(LeaderError::AlreadyRunning {
                holder: lock_file_holder(&path)
                    .map(|h| h.detail)
                    .unwrap_or_else(|| "holder unknown".into()),
                path: shown,
            }),
            Err(e) => Err(LeaderError::LockFile {
                path: shown,
                message: e.to_string(),
            }),
        }
    }

    /// Who leads the daemons on this store, if anyone does.
    pub async fn leader_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        self.holder(LEADER_LOCK, "-daemon.lock").await
    }

    /// Who runs a cycle right now, if anyone does.
    pub async fn cycle_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        self.holder(CYCLE_LOCK, "-cycle.lock").await
    }

    /// The holder of a lock: on PostgreSQL the session holding the advisory lock (named
    /// by its application name), on SQLite the record in the lock file.
    async fn holder(&self, lock: &str, suffix: &str) -> Result<Option<LockHolder>, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(lock_file_path(self, suffix)
                .as_deref()
                .and_then(lock_file_holder)),
            Pool::Postgres(pool) => {
                // pg_locks shows a bigint advisory key as its high and low 32 bits.
                let key = PgAdvisoryLock::new(lock)
                    .key()
                    .as_bigint()
                    .unwrap_or_default() as u64;
                let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT a.application_name, host(a.client_addr) FROM pg_locks l \
                     JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND l.classid = $1::oid AND l.objid = $2::oid",
                )
                .bind((key >> 32) as i64)
                .bind((key & 0xffff_ffff) as i64)
                .fetch_optional(pool)
                .await?;
                Ok(row.map(|(name, address)| LockHolder {
                    instance: name
                        .as_deref()
                        .and_then(|n| n.rsplit(' ').next())
                        .unwrap_or("unknown")
                        .to_owned(),
                    detail: format!(
                        "connected from {}",
                        address.unwrap_or_else(|| "a local socket".into())
                    ),
                }))
            }
        }
    }

    /// Takes the cycle lock if nobody holds it.
    pub async fn try_lock_cycles(&self, instance: &str) -> Result<Option<CycleLock>, StoreError> {
        if let Some(options) = pg_options(self, instance, "cycle") {
            let lock = PgAdvisoryLock::new(CYCLE_LOCK);
            let attempt = async {
                let conn = PgConnection::connect_with(&options).await?;
                lock.try_acquire(conn).await
            };
            return match tokio::time::timeout(LOCK_QUERY_TIMEOUT, attempt).await {
                Ok(Ok(Either::Left(guard))) => Ok(Some(CycleLock {
                    inner: CycleInner::Postgres(Box::new(guard)),
                })),
                Ok(Ok(Either::Right(conn))) => {
                    let _ = conn.close().await;
                    Ok(None)
                }
                Ok(Err(e)) => Err(StoreError::Connect(e)),
                // Dropping the attempt drops its connection, so a lock it may have taken
                // goes with it.
                Err(_) => Err(StoreError::Invalid(
                    "taking the cycle lock: PostgreSQL did not answer within 3 s".into(),
                )),
            };
        }
        let Some(path) = lock_file_path(self, "-cycle.lock") else {
            return Ok(Some(CycleLock {
                inner: CycleInner::Unshared,
            }));
        };
        match try_lock_file(&path, &lock_record(instance)) {
            Ok(Some(file)) => Ok(Some(CycleLock {
                inner: CycleInner::File(file),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::Invalid(format!(
                "cannot take the cycle lock file {}: {e}",
                path.display()
            ))),
        }
    }

    /// Takes the cycle lock, waiting while another process runs a cycle.
    pub async fn lock_cycles(&self, instance: &str) -> Result<CycleLock, StoreError> {
        let mut told = false;
        loop {
            if let Some(lock) = self.try_lock_cycles(instance).await? {
                return Ok(lock);
            }
            if !told {
                told = true;
                let holder = self.cycle_holder().await.ok().flatten();
                tracing::info!(
                    holder = holder
                        .as_ref()
                        .map(|h| h.instance.as_str())
                        .unwrap_or("unknown"),
                    "another process is running a cycle: waiting for it to finish"
                );
            }
            tokio::time::sleep(CYCLE_LOCK_POLL).await;
        }
    }
}

impl Leadership {
    /// Called every scheduler tick. A leader pings its lock's connection; a follower tries
    /// to take the lock (connecting first if it has no connection).
    pub async fn check(&mut self) -> LeaderCheck {
        match &mut self.inner {
            LeaderInner::Single(_) => LeaderCheck::Leading,
            LeaderInner::Postgres(pg) => pg.check().await,
        }
    }

    pub fn is_leading(&self) -> bool {
        match &self.inner {
            LeaderInner::Single(_) => true,
            LeaderInner::Postgres(pg) => pg.held.is_some(),
        }
    }

    /// Gives leadership up now (on shutdown), so another replica takes over at its next
    /// tick rather than when the server notices the connection is gone.
    pub async fn release(self) {
        match self.inner {
            LeaderInner::Single(file) => drop(file),
            LeaderInner::Postgres(mut pg) => {
                if let Some(guard) = pg.held.take() {
                    match tokio::time::timeout(LOCK_QUERY_TIMEOUT, guard.release_now()).await {
                        Ok(Ok(conn)) => {
                            let _ = conn.close().await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "releasing leadership failed: it ends with the connection")
                        }
                        Err(_) => tracing::warn!(
                            "releasing leadership timed out: it ends with the connection"
                        ),
                    }
                }
                if let Some(conn) = pg.idle.take() {
                    let _ = conn.close().await;
                }
            }
        }
    }
}

impl PgLeader {
    async fn check(&mut self) -> LeaderCheck {
        if let Some(guard) = self.held.as_mut() {
            let reason = match tokio::time::timeout(
                LOCK_QUERY_TIMEOUT,
                AsMut::<PgConnection>::as_mut(guard).ping(),
            )
            .await
            {
                Ok(Ok(())) => return LeaderCheck::Leading,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the leader connection did not answer within 3 s".into(),
            };
            // The server drops the lock with the session: whoever takes it next must not
            // find this process still applying. `leak` avoids queueing an unlock on a
            // connection that is gone; dropping the connection closes it.
            if let Some(guard) = self.held.take() {
                drop(guard.leak());
            }
            return LeaderCheck::Lost(reason);
        }
        let conn = match self.idle.take() {
            Some(conn) => conn,
            None => {
                match tokio::time::timeout(
                    LOCK_QUERY_TIMEOUT,
                    PgConnection::connect_with(&self.options),
                )
                .await
                {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        self.warn(&e.to_string());
                        return LeaderCheck::Following;
                    }
                    Err(_) => {
                        self.warn("connecting timed out");
                        return LeaderCheck::Following;
                    }
                }
            }
        };
        // Not cancel safe: on a timeout the connection is dropped, which releases whatever
        // the unanswered query may have taken.
        match tokio::time::timeout(LOCK_QUERY_TIMEOUT, self.lock.try_acquire(conn)).await {
            Ok(Ok(Either::Left(guard))) => {
                self.held = Some(guard);
                LeaderCheck::Leading
            }
            Ok(Ok(Either::Right(conn))) => {
                self.idle = Some(conn);
                LeaderCheck::Following
            }
            Ok(Err(e)) => {
                self.warn(&e.to_string());
                LeaderCheck::Following
            }
            Err(_) => {
                self.warn("the lock query timed out");
                LeaderCheck::Following
            }
        }
    }

    /// Logs an election failure at most once a minute (followers retry every tick).
    fn warn(&mut self, message: &str) {
        if self
            .last_warned
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_warned = Some(Instant::now());
            tracing::warn!(
                error = message,
                "cannot reach PostgreSQL for the leader election"
            );
        }
    }
}

/// The right to run one cycle. Released by `release`, or by the process's exit.
pub struct CycleLock {
    inner: CycleInner,
}

enum CycleInner {
    File(File),
    Postgres(Box<PgAdvisoryLockGuard<PgConnection>>),
    /// An in-memory SQLite database: no other process can reach it.
    Unshared,
}

impl CycleLock {
    pub async fn release(self) {
        match self.inner {
            CycleInner::File(file) => drop(file),
            CycleInner::Postgres(guard) => {
                // On failure the lock ends with its connection, which is dropped here.
                if let Ok(Ok(conn)) =
                    tokio::time::timeout(LOCK_QUERY_TIMEOUT, guard.release_now()).await
                {
                    let _ = conn.close().await;
                }
            }
            CycleInner::Unshared => {}
        }
    }
}
