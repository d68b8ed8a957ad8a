//! Access decisions are recorded many to a transaction.
//!
//! Every access check appends one session row and may not answer before the
//! row is committed. One transaction per row makes each check queue twice for
//! SQLite's single writer (once for its risk event, once for this row); here
//! the rows of the checks that arrive together share one transaction: each
//! caller queues its row, then waits for the turn to write; whoever gets the
//! turn writes every queued row (at most [`MAX_ROWS`] to a transaction) and
//! hands each caller its outcome. A row is acknowledged only after the
//! transaction that holds it committed. If a shared transaction fails, each
//! of its rows is tried again on its own, so one row's error is never another
//! caller's.

use super::sessions::{SessionRecord, insert_in};
use super::{Store, StoreError, StoreResult};
use tokio::sync::oneshot;

/// The most rows one transaction writes; the rest wait for the next.
const MAX_ROWS: usize = 256;

type Pending = (SessionRecord, oneshot::Sender<StoreResult<()>>);

#[derive(Default)]
pub(super) struct SessionQueue {
    pending: std::sync::Mutex<Vec<Pending>>,
    turn: tokio::sync::Mutex<()>,
}

impl SessionQueue {
    fn take(&self, limit: usize) -> Vec<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = pending.len().min(limit);
        pending.drain(..n).collect()
    }
}

/// Records `session`, returning once it is committed.
pub async fn record(store: &Store, session: SessionRecord) -> StoreResult<()> {
    let queue = &store.session_queue;
    let (sender, mut outcome) = oneshot::channel();
    queue.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((session, sender));
    let _turn = queue.turn.lock().await;
    loop {
        match outcome.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(StoreError::Corrupt("the session row was dropped before it was written".into()));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let rows = queue.take(MAX_ROWS);
        if rows.is_empty() {
            return Err(StoreError::Corrupt("the session row was neither queued nor written".into()));
        }
        // On a task of its own: a caller that gives up must not cut the others' transaction short.
        let writer = tokio::spawn(write(store.clone(), rows));
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "the session writer stopped");
        }
    }
}

async fn write(store: Store, rows: Vec<Pending>) {
    let together = store
        .retrying("sessions.record", || async {
            let mut tx = store.begin().await?;
            for (session, _) in &rows {
                insert_in(&mut tx, session).await?;
            }
            tx.commit().await.map_err(StoreError::from)
        })
        .await;
    match together {
        Ok(()) => {
            for (_, sender) in rows {
                let _ = sender.send(Ok(()));
            }
        }
        Err(e) if rows.len() == 1 => {
            if let Some((_, sender)) = rows.into_iter().next() {
                let _ = sender.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = rows.len(), "session rows failed together; writing each on its own");
            for (session, sender) in rows {
                let alone = async {
                    let mut tx = store.begin().await?;
                    insert_in(&mut tx, &session).await?;
                    tx.commit().await.map_err(StoreError::from)
                };
                let _ = sender.send(alone.await);
            }
        }
    }
}
