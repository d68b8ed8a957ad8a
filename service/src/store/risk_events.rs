//! The risk engine's shared input log (`risk_events`), probe claims and
//! the probe rounds they schedule.
//!
//! Every replica appends the events it evaluates and replays everybody's in
//! one order (the live risk engine, domain::risk_live). That only converges if a reader that has
//! passed a position can never later see a row before it: otherwise it would
//! skip the late row for good (its cursor is past it) or evaluate it out of
//! order. PostgreSQL hands out identity values when the INSERT runs, not
//! when the transaction commits, so `seq` alone is not such an order.
//!
//! So each row also records the transaction that appended it (`txn`), the log
//! is read in `(txn, seq)` order, and a reader takes only rows whose
//! transaction is older than the oldest one still running (its snapshot's
//! `xmin`). Every transaction below `xmin` has ended, and every transaction
//! that can still append has an id at or above it, so the rows a reader takes
//! form a prefix that never grows from the middle. Appenders take no lock and
//! commit together; a reader waits, at most, for the transactions running
//! when its own event committed. SQLite has one writer at a time, so there
//! `txn` stays 0, `seq` order is commit order, and every row is stable.

use super::columns::Columns;
use super::{Backend, Store, StoreResult, Tx};
use sqlx::Row;

/// A place in the log's order: `(txn, seq)`, compared in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub txn: i64,
    pub seq: i64,
}

impl Position {
    /// Before every row.
    pub const START: Position = Position { txn: i64::MIN, seq: i64::MIN };
    /// After every row.
    pub const END: Position = Position { txn: i64::MAX, seq: i64::MAX };
}

/// One event as stored; `event_json` is the `tether analyze` line.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// The appending transaction (0 on SQLite); see the module documentation.
    pub txn: i64,
    pub tenant_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub session_id: String,
    pub at_ms: i64,
    pub event_json: String,
    pub declared_json: String,
}

impl StoredEvent {
    pub fn position(&self) -> Position {
        Position { txn: self.txn, seq: self.seq }
    }
}

fn from_row(row: &impl Columns) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: row.column("seq")?,
        txn: row.column("txn")?,
        tenant_id: row.column("tenant_id")?,
        device_id: row.column("device_id")?,
        credential_id: row.column("credential_id")?,
        session_id: row.column("session_id")?,
        at_ms: row.column("at_ms")?,
        event_json: row.column("event_json")?,
        declared_json: row.column("declared_json")?,
    })
}

/// The condition that keeps a read to rows no running transaction can still
/// precede (see the module documentation).
fn stable(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "txn < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        Backend::Sqlite => "1 = 1",
    }
}

const APPEND: &str = "INSERT INTO risk_events (tenant_id, device_id, credential_id, session_id, at_ms, event_json, \
     declared_json) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq, txn";

/// Appends an event in the caller's transaction and returns its position.
pub async fn append(tx: &mut Tx, e: &StoredEvent) -> StoreResult<Position> {
    let row = sqlx::query(APPEND)
        .bind(&e.tenant_id)
        .bind(&e.device_id)
        .bind(&e.credential_id)
        .bind(&e.session_id)
        .bind(e.at_ms)
        .bind(&e.event_json)
        .bind(&e.declared_json)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Position { txn: row.try_get("txn")?, seq: row.try_get("seq")? })
}

/// [`append`] on the SQLite hot path (crate::store::direct), in the caller's transaction.
pub(super) fn append_direct(conn: &rusqlite::Connection, e: &StoredEvent) -> StoreResult<Position> {
    let mut statement = conn.prepare_cached(APPEND)?;
    let values: [&dyn rusqlite::ToSql; 7] =
        [&e.tenant_id, &e.device_id, &e.credential_id, &e.session_id, &e.at_ms, &e.event_json, &e.declared_json];
    let mut rows = super::direct::query(&mut statement, &values)?;
    let row = rows.next()?.ok_or_else(|| super::StoreError::Corrupt("an append returned no position".into()))?;
    Ok(Position { txn: row.get("txn")?, seq: row.get("seq")? })
}

/// On SQLite every row's `txn` is 0, so a `(txn, seq)` range is a `seq`
/// range: `(lo, hi]`. SQLite's planner reads a row-value range as a range on
/// `txn` alone and would scan the whole log on every catch-up.
fn sqlite_seq_range(cursor: Position, until: Position) -> (i64, i64) {
    let bound = |p: Position| match p.txn.cmp(&0) {
        std::cmp::Ordering::Less => i64::MIN,
        std::cmp::Ordering::Equal => p.seq,
        std::cmp::Ordering::Greater => i64::MAX,
    };
    (bound(cursor), bound(until))
}

/// [`after`] on SQLite: a search by `seq`, whatever the log's length
/// (`service/tests/risk_log_order.rs` checks the plan).
pub const SQLITE_AFTER: &str =
    "SELECT * FROM risk_events WHERE txn = 0 AND seq > $1 AND seq <= $2 AND at_ms >= $3 ORDER BY seq LIMIT $4";

/// Stable events after `cursor` up to `until` (inclusive) that happened at or
/// after `since_ms`, in log order, at most `limit`.
pub async fn after(
    store: &Store,
    cursor: Position,
    until: Position,
    since_ms: i64,
    limit: i64,
) -> StoreResult<Vec<StoredEvent>> {
    let rows = match store.backend() {
        Backend::Sqlite => {
            let (lo, hi) = sqlite_seq_range(cursor, until);
            if let Some(direct) = store.direct() {
                // Every access check catches up on the log: on the hot path (crate::store::direct).
                return direct.read(|conn| {
                    let mut statement = conn.prepare_cached(SQLITE_AFTER)?;
                    let values: [&dyn rusqlite::ToSql; 4] = [&lo, &hi, &since_ms, &limit];
                    let mut rows = super::direct::query(&mut statement, &values)?;
                    let mut events = Vec::new();
                    while let Some(row) = rows.next()? {
                        events.push(from_row(row)?);
                    }
                    Ok(events)
                });
            }
            sqlx::query(SQLITE_AFTER).bind(lo).bind(hi).bind(since_ms).bind(limit).fetch_all(store.pool()).await?
        }
        Backend::Postgres => {
            sqlx::query(
                "SELECT * FROM risk_events WHERE (txn, seq) > ($1, $2) AND (txn, seq) <= ($3, $4) \
                 AND at_ms >= $5 AND txn < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY txn, seq LIMIT $6",
            )
            .bind(cursor.txn)
            .bind(cursor.seq)
            .bind(until.txn)
            .bind(until.seq)
            .bind(since_ms)
            .bind(limit)
            .fetch_all(store.pool())
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// The last stable position (None when the log holds no stable row).
pub async fn last_stable(store: &Store) -> StoreResult<Option<Position>> {
    let sql = format!(
        "SELECT txn, seq FROM risk_events WHERE {} ORDER BY txn DESC, seq DESC LIMIT 1",
        stable(store.backend())
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(store.pool()).await?;
    match row {
        Some(row) => Ok(Some(Position { txn: row.try_get("txn")?, seq: row.try_get("seq")? })),
        None => Ok(None),
    }
}

/// True when the log holds no event at all.
pub async fn is_empty(store: &Store) -> StoreResult<bool> {
    Ok(sqlx::query("SELECT seq FROM risk_events LIMIT 1").fetch_optional(store.pool()).await?.is_none())
}

/// The last stable position of a log that holds events, waiting (briefly) for
/// the transactions still appending the first of them.
pub async fn wait_for_stable(store: &Store) -> StoreResult<Position> {
    for _ in 0..200 {
        if let Some(last) = last_stable(store).await? {
            return Ok(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Appends still running after 2 s: start from the beginning of the log.
    Ok(Position::START)
}

/// Where a warm-up starts so that it replays the newest `cap` events up to
/// `until` that happened since `since_ms`: the position just before the oldest of them.
pub async fn warm_start(store: &Store, until: Position, since_ms: i64, cap: i64) -> StoreResult<Position> {
    let offset = cap.saturating_sub(1).max(0);
    let row = match store.backend() {
        Backend::Sqlite => {
            let (_, hi) = sqlite_seq_range(Position::START, until);
            sqlx::query(
                "SELECT txn, seq FROM risk_events WHERE txn = 0 AND seq <= $1 AND at_ms >= $2 \
                 ORDER BY seq DESC LIMIT 1 OFFSET $3",
            )
            .bind(hi)
            .bind(since_ms)
            .bind(offset)
            .fetch_optional(store.pool())
            .await?
        }
        Backend::Postgres => {
            sqlx::query(
                "SELECT txn, seq FROM risk_events WHERE (txn, seq) <= ($1, $2) AND at_ms >= $3 \
                 ORDER BY txn DESC, seq DESC LIMIT 1 OFFSET $4",
            )
            .bind(until.txn)
            .bind(until.seq)
            .bind(since_ms)
            .bind(offset)
            .fetch_optional(store.pool())
            .await?
        }
    };
    match row {
        // Just before it: same transaction, the sequence number below.
        Some(row) => Ok(Position { txn: row.try_get("txn")?, seq: row.try_get::<i64, _>("seq")? - 1 }),
        // Fewer than `cap`: all of them (the `since_ms` filter does the rest).
        None => Ok(Position::START),
    }
}

/// Drops up to `batch` events older than `before_ms`, and the probe claims
/// older than that; returns how many events.
pub async fn prune(store: &Store, before_ms: i64, batch: i64) -> StoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM risk_events WHERE seq IN (SELECT seq FROM risk_events WHERE at_ms < $1 ORDER BY seq LIMIT $2)",
    )
    .bind(before_ms)
    .bind(batch)
    .execute(store.pool())
    .await?;
    sqlx::query("DELETE FROM risk_probes WHERE at_ms < $1").bind(before_ms).execute(store.pool()).await?;
    // Configuration keeps every round within the burst window, well inside the retention.
    sqlx::query("DELETE FROM risk_probe_rounds WHERE at_ms < $1").bind(before_ms).execute(store.pool()).await?;
    Ok(done.rows_affected())
}

/// One scheduled probe round of the probe `(egress, at_ms)`.
#[derive(Debug, Clone)]
pub struct ProbeRound {
    pub egress: String,
    pub at_ms: i64,
    pub round_no: i64,
    pub due_at_ms: i64,
    pub deadline_secs: i64,
    /// `[[tenant_id, device_id], ...]`.
    pub devices_json: String,
}

/// Claims the probe every replica's engine asks for at `at_ms` behind
/// `egress` and schedules its rounds, in the caller's transaction; true for
/// exactly one caller. The rounds must all carry that `egress` and `at_ms`.
pub async fn schedule_probe(
    tx: &mut Tx,
    egress: &str,
    at_ms: i64,
    now_ms: i64,
    rounds: &[ProbeRound],
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO risk_probes (egress, at_ms, claimed_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (egress, at_ms) DO NOTHING",
    )
    .bind(egress)
    .bind(at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    for r in rounds {
        sqlx::query(
            "INSERT INTO risk_probe_rounds (egress, at_ms, round_no, due_at_ms, deadline_secs, devices_json) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.egress)
        .bind(r.at_ms)
        .bind(r.round_no)
        .bind(r.due_at_ms)
        .bind(r.deadline_secs)
        .bind(&r.devices_json)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// Rounds not issued yet that are due by `now_ms`, earliest first, at most `limit`.
pub async fn due_rounds(store: &Store, now_ms: i64, limit: i64) -> StoreResult<Vec<ProbeRound>> {
    let rows = sqlx::query(
        "SELECT egress, at_ms, round_no, due_at_ms, deadline_secs, devices_json FROM risk_probe_rounds \
         WHERE issued_at_ms IS NULL AND due_at_ms <= $1 ORDER BY due_at_ms, egress, round_no LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ProbeRound {
                egress: row.try_get("egress")?,
                at_ms: row.try_get("at_ms")?,
                round_no: row.try_get("round_no")?,
                due_at_ms: row.try_get("due_at_ms")?,
                deadline_secs: row.try_get("deadline_secs")?,
                devices_json: row.try_get("devices_json")?,
            })
        })
        .collect()
}

/// Marks a round issued, in the transaction that inserts its challenges;
/// false when another replica (or task) issued it first.
pub async fn mark_round_issued(tx: &mut Tx, r: &ProbeRound, now_ms: i64, challenges: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE risk_probe_rounds SET issued_at_ms = $1, challenges = $2 \
         WHERE egress = $3 AND at_ms = $4 AND round_no = $5 AND issued_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(challenges)
    .bind(&r.egress)
    .bind(r.at_ms)
    .bind(r.round_no)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
