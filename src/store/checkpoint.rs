//! SQLite WAL checkpoints, off the write path. SQLite's automatic checkpoint runs inside
//! the commit that takes the WAL past 1,000 pages: that one write, and every SCIM request
//! queued behind this process's write turn, waits while 4 MB are copied into the database
//! (the 30 ms tail of `POST /Users`). The store's connections are opened with the automatic
//! checkpoint off, and a task of this module checkpoints on a connection of its own four
//! times a second, in PASSIVE mode, beside readers and writers; only when the WAL has grown
//! past `RESTART_PAGES` does it finish one while holding this process's write turn. It stops
//! when the store is closed or its last clone dropped.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;

/// How often the WAL is checkpointed: often enough that it stays a few MB under a steady
/// write load, rarely enough to cost nothing when idle.
const EVERY: Duration = Duration::from_millis(250);

/// The running checkpointer; dropping the last handle stops it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: CancellationToken,
}

impl Checkpointer {
    /// Opens the checkpointer's connection (an error here is the store's: it cannot be
    /// opened) and starts checkpointing on it.
    pub(super) async fn start(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let connection = options.connect().await?;
        let stop = CancellationToken::new();
        tokio::spawn(run(connection, stop.clone()));
        Ok(Self { stop })
    }

    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// WAL pages past which a checkpoint also takes this process's write turn. A checkpoint
/// that runs beside a busy writer never finishes (new frames keep coming), so the WAL never
/// starts over and grows with every write (a first sync's apply then took 3.5 to 5.4 s
/// instead of about 3). Most of the WAL is copied beside the writers; the rest, with them
/// held off.
const RESTART_PAGES: i64 = 4000;

async fn run(mut connection: SqliteConnection, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some((wal_pages, copied)) = checkpoint(&mut connection).await else {
            continue;
        };
        if wal_pages > RESTART_PAGES && copied < wal_pages {
            let _turn = super::sqlite_write_turn().await;
            checkpoint(&mut connection).await;
        }
    }
    let _ = connection.close().await;
}

/// One PASSIVE checkpoint: the WAL's pages and how many of them are in the database now;
/// None when it could not run.
async fn checkpoint(connection: &mut SqliteConnection) -> Option<(i64, i64)> {
    let done: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(connection)
            .await;
    match done {
        // Another process's checkpoint is running: it does the work.
        Ok((1, _, _)) => {
            tracing::debug!("WAL checkpoint skipped: another one is running");
            None
        }
        Ok((_, wal_pages, copied)) => {
            if copied > 0 {
                tracing::trace!(wal_pages, copied, "WAL checkpointed");
            }
            Some((wal_pages, copied))
        }
        Err(error) => {
            tracing::warn!(%error, "WAL checkpoint failed; retrying");
            None
        }
    }
}
