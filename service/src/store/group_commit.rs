//! Group commit for SQLite: this process's write transactions share one
//! database transaction and one `fsync`.
//!
//! SQLite has one writer at a time and, at `synchronous=FULL`, every commit
//! waits for the disk (about 1 ms here): committing each request on its own
//! caps a process at ~1,000 writes/s however little each writes. So writers
//! still take turns (a FIFO async mutex, as before), but each turn is a
//! `SAVEPOINT` of an open batch transaction (`BEGIN IMMEDIATE`; the first
//! turn of a batch needs none). A writer's
//! commit releases its savepoint, and then queues for the turn once more: when
//! its turn comes, the batch — its own work and that of every writer that was
//! queued ahead of it — commits together. Writers whose batch was committed
//! meanwhile learn the outcome without touching the database. One waiting
//! writer costs what it cost before; thirty-two share one `fsync`.
//!
//! A commit returns only once its batch is durable (or failed, when every
//! member fails with it): nothing is acknowledged that `kill -9` could undo.
//! A member that ends without commit is rolled back to its savepoint before
//! anyone else writes; when that is uncertain (cancelled mid-statement), the
//! whole batch fails rather than commit half of something.
//!
//! Statements that change the batch (`BEGIN`, `SAVEPOINT`, `RELEASE`,
//! `COMMIT`) run on spawned tasks, so a caller that is cancelled (a client
//! that hung up) never leaves one half-done.

use sqlx::any::Any;
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

type Outcome = Arc<OnceLock<Result<(), String>>>;

/// The open batch transaction and what its members left in it.
struct Batch {
    conn: PoolConnection<Any>,
    /// Members that released their savepoint and wait for the commit.
    released: usize,
    /// A member ended without commit: roll back to its savepoint first.
    abandoned: bool,
    /// The current member opened a savepoint: only one that joins released
    /// work needs it (the first member's rollback is the batch's).
    savepoint: bool,
    /// Why the batch can no longer commit (its outcome, once ended).
    failed: Option<String>,
    outcome: Outcome,
}

/// This process's SQLite writers (crate::store::Store::begin).
#[derive(Clone)]
pub(super) struct GroupCommit {
    pool: AnyPool,
    slot: Arc<Mutex<Option<Batch>>>,
    /// The longest a writer waits for its turn (the busy timeout).
    wait: Duration,
    counts: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    members: AtomicU64,
}

/// Batches committed so far, and the write transactions they held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommits {
    pub batches: u64,
    pub transactions: u64,
}

/// This process's write turn with no batch open (crate::store::direct
/// writes in it): while it is held, no other writer of this process writes.
pub(super) struct Turn {
    _slot: OwnedMutexGuard<Option<Batch>>,
}

/// One writer's turn: a savepoint of the open batch.
pub(super) struct Member {
    batch: OwnedMappedMutexGuard<Option<Batch>, Batch>,
    group: GroupCommit,
    done: bool,
}

fn io_error(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(message))
}

async fn run(conn: &mut PoolConnection<Any>, statement: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(statement).execute(&mut **conn).await.map(|_| ())
}

impl GroupCommit {
    pub(super) fn new(pool: AnyPool, wait: Duration) -> GroupCommit {
        GroupCommit { pool, slot: Arc::default(), wait, counts: Arc::default() }
    }

    pub(super) fn counts(&self) -> GroupCommits {
        GroupCommits {
            batches: self.counts.batches.load(Ordering::Relaxed),
            transactions: self.counts.members.load(Ordering::Relaxed),
        }
    }

    /// Waits for this process's turn to write (at most the busy timeout) and
    /// opens a savepoint in the batch, opening the batch if none is.
    pub(super) async fn begin(&self) -> Result<Member, sqlx::Error> {
        let group = self.clone();
        // On a task of its own: a cancelled caller drops the member, which is then rolled back.
        tokio::spawn(async move { group.start_member().await })
            .await
            .map_err(|e| io_error(format!("a write transaction could not start: {e}")))?
    }

    async fn start_member(self) -> Result<Member, sqlx::Error> {
        let mut slot = tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        settle_abandoned(&mut slot).await;
        if slot.as_ref().is_some_and(|b| b.failed.is_some()) {
            end_batch(&mut slot, &self.counts).await;
        }
        if slot.is_none() {
            let mut conn = self.pool.acquire().await?;
            run(&mut conn, "BEGIN IMMEDIATE").await?;
            *slot = Some(Batch {
                conn,
                released: 0,
                abandoned: false,
                savepoint: false,
                failed: None,
                outcome: Outcome::default(),
            });
        }
        let Some(batch) = slot.as_mut() else { return Err(io_error("the batch transaction vanished".into())) };
        batch.savepoint = batch.released > 0;
        if batch.savepoint
            && let Err(e) = run(&mut batch.conn, "SAVEPOINT member").await
        {
            batch.failed = Some(format!("a savepoint could not be opened: {e}"));
            end_batch(&mut slot, &self.counts).await;
            return Err(e);
        }
        let batch = OwnedMutexGuard::try_map(slot, Option::as_mut)
            .map_err(|_| io_error("the batch transaction vanished".into()))?;
        Ok(Member { batch, group: self, done: false })
    }

    /// Waits for this process's turn to write (at most the busy timeout) and
    /// commits the open batch, if any, so that the turn's holder can write
    /// on a connection of its own.
    pub(super) async fn exclusive(&self) -> Result<Turn, sqlx::Error> {
        let group = self.clone();
        // On a task of its own, as `begin`: the batch's COMMIT is never cut short.
        tokio::spawn(async move {
            let mut slot = tokio::time::timeout(group.wait, Arc::clone(&group.slot).lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?;
            end_batch(&mut slot, &group.counts).await;
            Ok(Turn { _slot: slot })
        })
        .await
        .map_err(|e| io_error(format!("a write turn could not start: {e}")))?
    }

    /// Counts a transaction committed in an exclusive turn.
    pub(super) fn count_exclusive_commit(&self) {
        self.counts.batches.fetch_add(1, Ordering::Relaxed);
        self.counts.members.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::record_group_commit(1);
    }

    /// Ends the open batch now (committing what its members released), in
    /// the turn of the caller; used when a member left the batch without
    /// anyone queued to commit it.
    async fn tidy(self) {
        let mut slot = self.slot.lock_owned().await;
        end_batch(&mut slot, &self.counts).await;
    }

    /// In a turn of its own: the outcome of the batch `outcome` belongs to,
    /// committing it if nobody has yet.
    async fn finish(self, outcome: Outcome) -> Result<(), sqlx::Error> {
        let mut slot = self.slot.lock_owned().await;
        if outcome.get().is_none() {
            end_batch(&mut slot, &self.counts).await;
        }
        match outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(io_error(format!("the write was not committed: {why}"))),
            None => Err(io_error("the batch transaction ended without an outcome".into())),
        }
    }
}

/// Rolls back what an abandoned member left; if that fails, the batch cannot
/// be trusted and fails.
async fn settle_abandoned(slot: &mut Option<Batch>) {
    let Some(batch) = slot.as_mut() else { return };
    if !batch.abandoned {
        return;
    }
    batch.abandoned = false;
    if !batch.savepoint {
        // The first member: the batch holds only its work, and ends with it.
        batch.failed.get_or_insert_with(|| "abandoned".into());
        return;
    }
    let undone = match run(&mut batch.conn, "ROLLBACK TO member").await {
        Ok(()) => run(&mut batch.conn, "RELEASE member").await,
        Err(e) => Err(e),
    };
    if let Err(e) = undone {
        batch.failed.get_or_insert(format!("an abandoned write could not be rolled back: {e}"));
    }
}

/// Commits the batch (or rolls it back when it failed or holds nothing) and
/// records the outcome for its members. The connection goes back to the
/// pool only when it is known to be outside any transaction.
async fn end_batch(slot: &mut Option<Batch>, counts: &Counters) {
    settle_abandoned(slot).await;
    let Some(mut batch) = slot.take() else { return };
    let outcome = match (batch.failed.take(), batch.released) {
        (Some(why), _) => Err(why),
        (None, 0) => Ok(()),
        (None, _) => run(&mut batch.conn, "COMMIT").await.map_err(|e| format!("the commit failed: {e}")),
    };
    let clean = match &outcome {
        Ok(()) if batch.released > 0 => {
            let members = u64::try_from(batch.released).unwrap_or(u64::MAX);
            counts.batches.fetch_add(1, Ordering::Relaxed);
            counts.members.fetch_add(members, Ordering::Relaxed);
            crate::telemetry::record_group_commit(members);
            true
        }
        _ => run(&mut batch.conn, "ROLLBACK").await.is_ok(),
    };
    if !clean {
        batch.conn.close_on_drop();
    }
    let _ = batch.outcome.set(outcome);
}

impl Member {
    /// Releases the savepoint and waits until its batch committed.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        // Cancelled during the release, the member counts as abandoned: its
        // savepoint is then gone or not, and the batch fails either way.
        if self.batch.savepoint
            && let Err(e) = run(&mut self.batch.conn, "RELEASE member").await
        {
            self.done = true;
            self.batch.failed.get_or_insert(format!("a write could not be released: {e}"));
            let group = self.group.clone();
            drop(self);
            group.tidy().await;
            return Err(e);
        }
        self.done = true;
        self.batch.released += 1;
        let outcome = Arc::clone(&self.batch.outcome);
        let group = self.group.clone();
        // Let the writers queued ahead add their work, then commit them all.
        drop(self);
        tokio::spawn(group.finish(outcome)).await.map_err(|e| io_error(format!("the commit did not complete: {e}")))?
    }

    /// Rolls back to the savepoint; the batch's other members are unaffected.
    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.done = true;
        self.batch.abandoned = true;
        let idle = self.batch.released == 0;
        let group = self.group.clone();
        drop(self);
        if idle {
            group.tidy().await;
        }
        Ok(())
    }

    pub(super) fn connection(&self) -> &AnyConnection {
        &self.batch.conn
    }

    pub(super) fn connection_mut(&mut self) -> &mut AnyConnection {
        &mut self.batch.conn
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.batch.abandoned = true;
        // Nobody queued to end a batch that holds nothing released: end it
        // soon, so that other processes are not kept from the file.
        if self.batch.released == 0
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(self.group.clone().tidy());
        }
    }
}
