//! SQLite WAL checkpoints off the request path. Left to SQLite, a checkpoint runs inside
//! whichever commit grows the log past `wal_autocheckpoint` pages: that commit copies the log
//! into the database file and syncs it before its caller hears back (p99 42 ms at
//! `synchronous=NORMAL`, BENCHMARKS.md). tetherd instead checkpoints from a background task
//! every [`INTERVAL`], so commits only append to the log; the automatic checkpoint stays as a
//! backstop at [`BACKSTOP_PAGES`] for processes that run no task, or a task that falls behind.

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::{Backend, Store, StoreResult};

/// How often the background task checkpoints.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The log size (pages of 4 KiB) at which a commit still checkpoints inline.
pub const BACKSTOP_PAGES: u32 = 10_000;

pub(super) const AUTOCHECKPOINT_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 10000";

/// What one checkpoint did (`PRAGMA wal_checkpoint` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// A reader or writer kept part of the log from being copied this time.
    pub busy: bool,
    pub log_pages: i64,
    pub copied_pages: i64,
}

impl Store {
    /// Copies what it can of the log into the database file without waiting for readers or
    /// writers (`PASSIVE`). None on PostgreSQL.
    pub async fn checkpoint(&self) -> StoreResult<Option<Checkpointed>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await?;
        let (busy, log_pages, copied_pages): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(Some(Checkpointed { busy: busy != 0, log_pages, copied_pages }))
    }

    /// Checkpoints every [`INTERVAL`] until `stopping` turns true (SQLite only).
    pub fn spawn_checkpoints(&self, mut stopping: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopping.changed() => return,
                }
                if let Err(e) = store.checkpoint().await {
                    // The backstop still bounds the log; the next tick tries again.
                    tracing::warn!(error = %e, "a background WAL checkpoint failed");
                }
            }
        }))
    }
}
