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
//!
//! Both kinds of row share the queue, so the session row of one check and the
//! risk event of the next commit together. On a SQLite file the transaction is
//! written by crate::store::direct, in one hand-off to a blocking thread.

use super::direct::Durability;
use super::presence::{self, AnswerRefused, RecordedAnswer};
use super::risk_events::{self, Position, StoredEvent};
use super::sessions::{self, SessionRecord};
use super::{Store, StoreError, StoreResult, Tx};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The most rows one transaction writes; the rest wait for the next.
const MAX_ROWS: usize = 256;

/// A row an access check appends, or a verified presence answer (direct path only).
#[derive(Clone)]
pub(super) enum Row {
    Session(SessionRecord),
    RiskEvent(StoredEvent),
    Answer(Box<RecordedAnswer>),
}

/// What writing a [`Row`] returned.
pub(super) enum Written {
    Session,
    RiskEvent(Position),
    Answer(Result<Option<Position>, AnswerRefused>),
}

type Pending = (Row, oneshot::Sender<StoreResult<Written>>);

/// Rows waiting for the turn to write, and the turn.
#[derive(Default)]
pub(super) struct Queues {
    pending: std::sync::Mutex<Vec<Pending>>,
    turn: tokio::sync::Mutex<()>,
}

fn mismatch(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a {what} row was written as another kind"))
}

/// Records an access decision's session, returning once it is committed.
pub async fn record_session(store: &Store, session: SessionRecord) -> StoreResult<()> {
    match store.queues.append(store, Row::Session(session)).await? {
        Written::Session => Ok(()),
        _ => Err(mismatch("session")),
    }
}

/// Appends a risk event to the shared log, returning its position once it is committed.
pub async fn append_risk_event(store: &Store, event: StoredEvent) -> StoreResult<Position> {
    match store.queues.append(store, Row::RiskEvent(event)).await? {
        Written::RiskEvent(position) => Ok(position),
        _ => Err(mismatch("risk event")),
    }
}

/// True when verified presence answers may be recorded with [`record_answer`]
/// (a SQLite file, crate::store::direct); elsewhere the caller records each
/// in a transaction of its own.
pub fn records_answers(store: &Store) -> bool {
    store.direct().is_some()
}

/// Records a verified presence answer with the other queued rows, all or
/// nothing, once committed: its risk event's position, or why it was refused.
/// Only where [`records_answers`].
pub async fn record_answer(
    store: &Store,
    answer: RecordedAnswer,
) -> StoreResult<Result<Option<Position>, AnswerRefused>> {
    if !records_answers(store) {
        return Err(StoreError::Corrupt("presence answers are queued only on a SQLite file".into()));
    }
    match store.queues.append(store, Row::Answer(Box::new(answer))).await? {
        Written::Answer(recorded) => Ok(recorded),
        _ => Err(mismatch("presence answer")),
    }
}

impl Queues {
    fn take(&self, limit: usize) -> Vec<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = pending.len().min(limit);
        pending.drain(..n).collect()
    }

    async fn append(&self, store: &Store, row: Row) -> StoreResult<Written> {
        let (sender, mut outcome) = oneshot::channel();
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((row, sender));
        let _turn = self.turn.lock().await;
        loop {
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Corrupt(
                        "access-check rows: the row was dropped before it was written".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let rows = self.take(MAX_ROWS);
            if rows.is_empty() {
                return Err(StoreError::Corrupt("access-check rows: the row was neither queued nor written".into()));
            }
            if rows.len() == 1 {
                // Only this caller's row: nobody else's depends on this call running to the end.
                write(store.clone(), rows).await;
                continue;
            }
            // On a task of its own: a caller that gives up must not cut the others' transaction short.
            let writer = tokio::spawn(write(store.clone(), rows));
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "the access-check row writer stopped");
            }
        }
    }
}

async fn write(store: Store, pending: Vec<Pending>) {
    let (rows, senders): (Vec<Row>, Vec<_>) = pending.into_iter().unzip();
    let rows = Arc::new(rows);
    match write_together(&store, Arc::clone(&rows)).await {
        Ok(results) => {
            for (sender, result) in senders.into_iter().zip(results) {
                let _ = sender.send(Ok(result));
            }
        }
        Err(e) if rows.len() == 1 => {
            if let Some(sender) = senders.into_iter().next() {
                let _ = sender.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = rows.len(), "access-check rows failed together; writing each on its own");
            for (row, sender) in rows.iter().zip(senders) {
                let alone = write_together(&store, Arc::new(vec![row.clone()])).await;
                let _ = sender.send(alone.and_then(|mut written| {
                    written.pop().ok_or_else(|| StoreError::Corrupt("a row was written without a result".into()))
                }));
            }
        }
    }
}

/// Writes `rows` in one transaction; each row's result, or the error with nothing written.
async fn write_together(store: &Store, rows: Arc<Vec<Row>>) -> StoreResult<Vec<Written>> {
    if let Some(direct) = store.direct() {
        let turn = store.writers.exclusive().await?;
        let written = direct.write(turn, Arc::clone(&rows), durability_of(&rows), insert_direct).await?;
        store.writers.count_exclusive_commit();
        return Ok(written);
    }
    store
        .retrying("access-check rows", || async {
            let mut tx = store.begin().await?;
            let mut results = Vec::with_capacity(rows.len());
            for row in rows.iter() {
                results.push(insert(&mut tx, row).await?);
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(results)
        })
        .await
}

/// A check acknowledges nothing before its session row commits, after its
/// risk event: a batch of events alone need not wait for the disk. Any other
/// row is acknowledged once its batch commits.
fn durability_of(rows: &[Row]) -> Durability {
    match rows.iter().all(|row| matches!(row, Row::RiskEvent(_))) {
        true => Durability::CoveredByLater,
        false => Durability::Configured,
    }
}

async fn insert(tx: &mut Tx, row: &Row) -> StoreResult<Written> {
    match row {
        Row::Session(s) => sessions::insert_in(tx, s).await.map(|()| Written::Session),
        Row::RiskEvent(e) => risk_events::append(tx, e).await.map(Written::RiskEvent),
        // record_answer queues none without the direct path.
        Row::Answer(_) => Err(StoreError::Corrupt("presence answers are queued only on a SQLite file".into())),
    }
}

fn insert_direct(conn: &rusqlite::Connection, row: &Row) -> StoreResult<Written> {
    match row {
        Row::Session(s) => sessions::insert_direct(conn, s).map(|()| Written::Session),
        Row::RiskEvent(e) => risk_events::append_direct(conn, e).map(Written::RiskEvent),
        Row::Answer(a) => presence::record_answer_direct(conn, a).map(Written::Answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Row {
        Row::RiskEvent(StoredEvent {
            seq: 0,
            txn: 0,
            tenant_id: "t".into(),
            device_id: "d".into(),
            credential_id: "c".into(),
            session_id: String::new(),
            at_ms: 1,
            event_json: "{}".into(),
            declared_json: String::new(),
        })
    }

    fn session() -> Row {
        Row::Session(SessionRecord {
            id: "ses".into(),
            tenant_id: "t".into(),
            worker_external_id: "w".into(),
            device_id: "d".into(),
            credential_id: "c".into(),
            source_ip: "127.0.0.1".into(),
            gateway_id: "g".into(),
            decision: "allow".into(),
            reasons_json: "[]".into(),
            would_deny_json: "[]".into(),
            at_ms: 1,
        })
    }

    #[test]
    fn only_a_batch_of_risk_events_alone_skips_the_disk() {
        assert_eq!(durability_of(&[event(), event()]), Durability::CoveredByLater);
        assert_eq!(durability_of(&[event(), session()]), Durability::Configured);
        assert_eq!(durability_of(&[session()]), Durability::Configured);
    }
}
