//! Rows that access checks only append — their risk event and their session
//! record — are written many to a transaction.
//!
//! Every access check appends two rows and may not answer before each is
//! committed. One transaction per row makes each check queue twice for
//! SQLite's single writer, each time across several statement round trips;
//! here the rows of the checks that arrive together share one transaction:
//! each caller queues its row, then waits for the turn to write; whoever gets
//! the turn writes every queued row (at most [`MAX_ROWS`] to a transaction)
//! and hands each caller its outcome. A row is acknowledged only after the
//! transaction that holds it committed. If a shared transaction fails, each
//! of its rows is tried again on its own, so one row's error is never another
//! caller's.

use super::risk_events::{self, Position, StoredEvent};
use super::sessions::{self, SessionRecord};
use super::{Store, StoreError, StoreResult, Tx};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::oneshot;

/// The most rows one transaction writes; the rest wait for the next.
const MAX_ROWS: usize = 256;

type Insert<T, R> = for<'a> fn(&'a mut Tx, &'a T) -> Pin<Box<dyn Future<Output = StoreResult<R>> + Send + 'a>>;

type Pending<T, R> = (T, oneshot::Sender<StoreResult<R>>);

pub(super) struct AppendQueue<T, R> {
    what: &'static str,
    insert: Insert<T, R>,
    pending: std::sync::Mutex<Vec<Pending<T, R>>>,
    turn: tokio::sync::Mutex<()>,
}

/// The queues a store keeps.
pub(super) struct Queues {
    sessions: AppendQueue<SessionRecord, ()>,
    risk_events: AppendQueue<StoredEvent, Position>,
}

impl Default for Queues {
    fn default() -> Queues {
        Queues {
            sessions: AppendQueue::new("sessions.record", |tx, s| Box::pin(sessions::insert_in(tx, s))),
            risk_events: AppendQueue::new("risk.append", |tx, e| Box::pin(risk_events::append(tx, e))),
        }
    }
}

/// Records an access decision's session, returning once it is committed.
pub async fn record_session(store: &Store, session: SessionRecord) -> StoreResult<()> {
    store.queues.sessions.append(store, session).await
}

/// Appends a risk event to the shared log, returning its position once it is committed.
pub async fn append_risk_event(store: &Store, event: StoredEvent) -> StoreResult<Position> {
    store.queues.risk_events.append(store, event).await
}

impl<T: Send + Sync + 'static, R: Send + 'static> AppendQueue<T, R> {
    fn new(what: &'static str, insert: Insert<T, R>) -> AppendQueue<T, R> {
        AppendQueue { what, insert, pending: std::sync::Mutex::default(), turn: tokio::sync::Mutex::default() }
    }

    fn take(&self, limit: usize) -> Vec<Pending<T, R>> {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = pending.len().min(limit);
        pending.drain(..n).collect()
    }

    async fn append(&self, store: &Store, row: T) -> StoreResult<R> {
        let (sender, mut outcome) = oneshot::channel();
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((row, sender));
        let _turn = self.turn.lock().await;
        loop {
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: the row was dropped before it was written",
                        self.what
                    )));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let rows = self.take(MAX_ROWS);
            if rows.is_empty() {
                return Err(StoreError::Corrupt(format!("{}: the row was neither queued nor written", self.what)));
            }
            if rows.len() == 1 {
                // Only this caller's row: nobody else's depends on this call running to the end.
                write(store.clone(), self.what, self.insert, rows).await;
                continue;
            }
            // On a task of its own: a caller that gives up must not cut the others' transaction short.
            let writer = tokio::spawn(write(store.clone(), self.what, self.insert, rows));
            if let Err(e) = writer.await {
                tracing::error!(what = self.what, error = %e, "the row writer stopped");
            }
        }
    }
}

async fn write<T: Send + Sync, R: Send>(
    store: Store,
    what: &'static str,
    insert: Insert<T, R>,
    rows: Vec<Pending<T, R>>,
) {
    let together = store
        .retrying(what, || async {
            let mut tx = store.begin().await?;
            let mut results = Vec::with_capacity(rows.len());
            for (row, _) in &rows {
                results.push(insert(&mut tx, row).await?);
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(results)
        })
        .await;
    match together {
        Ok(results) => {
            for ((_, sender), result) in rows.into_iter().zip(results) {
                let _ = sender.send(Ok(result));
            }
        }
        Err(e) if rows.len() == 1 => {
            if let Some((_, sender)) = rows.into_iter().next() {
                let _ = sender.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(what, error = %e, rows = rows.len(), "rows failed together; writing each on its own");
            for (row, sender) in rows {
                let alone = async {
                    let mut tx = store.begin().await?;
                    let result = insert(&mut tx, &row).await?;
                    tx.commit().await.map_err(StoreError::from)?;
                    Ok(result)
                };
                let _ = sender.send(alone.await);
            }
        }
    }
}
