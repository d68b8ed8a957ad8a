//! The risk engine's shared input log (`risk_events`), probe claims and
//! the probe rounds they schedule.
//!
//! Every replica appends the events it evaluates and replays everybody's in
//! `seq` order (crate::risk_shared). That only converges if a reader that has
//! seen `seq = n` can never later see a row with a lower `seq`: otherwise it
//! would skip the late row for good (its cursor is past it) or evaluate it
//! out of order. PostgreSQL hands out identity values when the INSERT runs,
//! not when the transaction commits, so two appenders can commit in the
//! opposite order of their values. [`append`] therefore takes a table lock
//! that only appenders contend on, takes its value under it and keeps it to
//! commit: values become visible in order, and a value whose transaction
//! rolled back leaves a hole nobody needs to wait for. SQLite gets the same
//! from its single writer (every write transaction is `BEGIN IMMEDIATE`).
//! The price is that appends are serialized, each for the rest of its
//! transaction; appenders take the lock as their last step before commit.

use super::{Backend, Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

/// One event as stored; `event_json` is the `tether analyze` line.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub tenant_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub session_id: String,
    pub at_ms: i64,
    pub event_json: String,
    pub declared_json: String,
}

fn from_row(row: &AnyRow) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        tenant_id: row.try_get("tenant_id")?,
        device_id: row.try_get("device_id")?,
        credential_id: row.try_get("credential_id")?,
        session_id: row.try_get("session_id")?,
        at_ms: row.try_get("at_ms")?,
        event_json: row.try_get("event_json")?,
        declared_json: row.try_get("declared_json")?,
    })
}

/// Appends an event in the caller's transaction (see the module documentation
/// for the lock) and returns its sequence number. Call it last before commit.
pub async fn append(tx: &mut Tx, backend: Backend, e: &StoredEvent) -> StoreResult<i64> {
    if backend == Backend::Postgres {
        // Conflicts with itself and with DELETE, not with readers.
        sqlx::query("LOCK TABLE risk_events IN SHARE ROW EXCLUSIVE MODE").execute(&mut **tx).await?;
    }
    let row = sqlx::query(
        "INSERT INTO risk_events (tenant_id, device_id, credential_id, session_id, at_ms, event_json, \
         declared_json) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(&e.tenant_id)
    .bind(&e.device_id)
    .bind(&e.credential_id)
    .bind(&e.session_id)
    .bind(e.at_ms)
    .bind(&e.event_json)
    .bind(&e.declared_json)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("seq")?)
}

/// Events after `cursor` up to `until` (inclusive) that happened at or after
/// `since_ms`, in sequence order, at most `limit`.
pub async fn after(store: &Store, cursor: i64, until: i64, since_ms: i64, limit: i64) -> StoreResult<Vec<StoredEvent>> {
    let rows =
        sqlx::query("SELECT * FROM risk_events WHERE seq > $1 AND seq <= $2 AND at_ms >= $3 ORDER BY seq LIMIT $4")
            .bind(cursor)
            .bind(until)
            .bind(since_ms)
            .bind(limit)
            .fetch_all(store.pool())
            .await?;
    rows.iter().map(from_row).collect()
}

/// The highest sequence number stored (0 when there is none).
pub async fn last_seq(store: &Store) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM risk_events").fetch_one(store.pool()).await?;
    Ok(row.try_get("last")?)
}

/// Where a warm-up starts so that it replays the newest `cap` events up to
/// `until` that happened since `since_ms`: the cursor just before the oldest of them.
pub async fn warm_start(store: &Store, until: i64, since_ms: i64, cap: i64) -> StoreResult<i64> {
    let row =
        sqlx::query("SELECT seq FROM risk_events WHERE seq <= $1 AND at_ms >= $2 ORDER BY seq DESC LIMIT 1 OFFSET $3")
            .bind(until)
            .bind(since_ms)
            .bind(cap.saturating_sub(1).max(0))
            .fetch_optional(store.pool())
            .await?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>("seq")? - 1),
        // Fewer than `cap`: all of them (the `since_ms` filter does the rest).
        None => Ok(0),
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
