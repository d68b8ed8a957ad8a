//! Presence challenges and the record of every answer, miss and failure.

use super::columns::{Columns, FromColumns};
use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub tenant_id: String,
    pub credential_id: String,
    pub device_id: String,
    pub nonce: Vec<u8>,
    /// `scheduled` or `on_demand`.
    pub reason: String,
    pub issued_at_ms: i64,
    pub deadline_ms: i64,
    pub consumed_at_ms: Option<i64>,
    pub missed_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct PresenceEvent {
    pub id: String,
    pub tenant_id: String,
    /// ok, missed, failed, replayed, late, clone_suspected.
    pub outcome: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub challenge_id: String,
    pub at_ms: i64,
    pub source_ip: String,
    pub detail: String,
}

/// Filters shared by the report queries; empty strings and zeros mean "any".
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since_ms: i64,
    pub until_ms: i64,
    pub worker_external_id: String,
    pub device_id: String,
}

/// Keyset cursor for newest-first listings.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn start() -> Cursor {
        Cursor { at_ms: i64::MAX, id: String::new() }
    }
}

fn challenge_from_row(row: &impl Columns) -> StoreResult<Challenge> {
    Ok(Challenge {
        id: row.column("id")?,
        tenant_id: row.column("tenant_id")?,
        credential_id: row.column("credential_id")?,
        device_id: row.column("device_id")?,
        nonce: row.column("nonce")?,
        reason: row.column("reason")?,
        issued_at_ms: row.column("issued_at_ms")?,
        deadline_ms: row.column("deadline_ms")?,
        consumed_at_ms: row.column("consumed_at_ms")?,
        missed_at_ms: row.column("missed_at_ms")?,
    })
}

impl FromColumns for Challenge {
    fn from_columns(row: &impl Columns) -> StoreResult<Challenge> {
        challenge_from_row(row)
    }
}

fn event_from_row(row: &AnyRow) -> StoreResult<PresenceEvent> {
    Ok(PresenceEvent {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        outcome: row.try_get("outcome")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        credential_id: row.try_get("credential_id")?,
        challenge_id: row.try_get("challenge_id")?,
        at_ms: row.try_get("at_ms")?,
        source_ip: row.try_get("source_ip")?,
        detail: row.try_get("detail")?,
    })
}

/// Inserts in a transaction of its own, so that on SQLite it takes its turn
/// with this process's other writers (crate::store::tx).
pub async fn insert_challenge(store: &Store, c: &Challenge) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    insert_challenge_in(&mut tx, c).await?;
    tx.commit().await?;
    Ok(())
}

/// As [`insert_challenge`], in the caller's transaction. Also moves the
/// credential's `last_challenged_at_ms`, which [`credentials_due`] searches by.
pub async fn insert_challenge_in(tx: &mut Tx, c: &Challenge) -> StoreResult<()> {
    insert_challenge_query(c).execute(&mut **tx).await?;
    sqlx::query("UPDATE credentials SET last_challenged_at_ms = $2 WHERE id = $1 AND last_challenged_at_ms < $2")
        .bind(&c.credential_id)
        .bind(c.issued_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn insert_challenge_query(c: &Challenge) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO challenges (id, tenant_id, credential_id, device_id, nonce, reason, issued_at_ms, \
         deadline_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&c.id)
    .bind(&c.tenant_id)
    .bind(&c.credential_id)
    .bind(&c.device_id)
    .bind(&c.nonce)
    .bind(&c.reason)
    .bind(c.issued_at_ms)
    .bind(c.deadline_ms)
}

pub async fn challenge(store: &Store, id: &str) -> StoreResult<Option<Challenge>> {
    store.get_by_key("SELECT * FROM challenges WHERE id = $1", &[id]).await
}

pub async fn challenge_by_nonce(store: &Store, nonce: &[u8]) -> StoreResult<Option<Challenge>> {
    let row = sqlx::query("SELECT * FROM challenges WHERE nonce = $1").bind(nonce).fetch_optional(store.pool()).await?;
    row.as_ref().map(challenge_from_row).transpose()
}

/// Open challenges of a credential whose deadline has not passed, oldest first.
pub async fn pending_for_credential(store: &Store, credential_id: &str, now_ms: i64) -> StoreResult<Vec<Challenge>> {
    let rows = sqlx::query(
        "SELECT * FROM challenges WHERE credential_id = $1 AND consumed_at_ms IS NULL \
         AND missed_at_ms IS NULL AND deadline_ms > $2 ORDER BY issued_at_ms, id",
    )
    .bind(credential_id)
    .bind(now_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(challenge_from_row).collect()
}

/// Consumes an open, in-time challenge. Exactly one concurrent caller wins.
pub async fn consume(tx: &mut Tx, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(CONSUME).bind(id).bind(now_ms).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

const CONSUME: &str = "UPDATE challenges SET consumed_at_ms = $2 WHERE id = $1 AND consumed_at_ms IS NULL \
     AND missed_at_ms IS NULL AND deadline_ms >= $2";

/// [`credentials_due`]: for each tenant (the outer loop, fixed by `CROSS
/// JOIN`: SQLite would otherwise walk every credential), an index search
/// over its active credentials last challenged before its interval, longest
/// ago first, stopping at the limit — no sort, no walk of the credentials that
/// are not due (`service/tests/query_plans.rs` checks the plan). Credentials
/// of revoked devices are skipped after the search, so each tick still passes
/// over those.
pub const CREDENTIALS_DUE: &str = "SELECT c.tenant_id, c.id AS credential_id, c.device_id, t.challenge_deadline_s \
     FROM tenants t CROSS JOIN credentials c JOIN devices d ON d.id = c.device_id \
     WHERE c.tenant_id = t.id AND c.revoked_at_ms IS NULL \
     AND c.last_challenged_at_ms <= $1 - t.presence_interval_s * 1000 AND d.revoked_at_ms IS NULL LIMIT $2";

/// Active credentials on active devices that have had no challenge within
/// their tenant's presence interval: (tenant, credential, device, deadline seconds).
pub async fn credentials_due(
    store: &Store,
    now_ms: i64,
    limit: i64,
) -> StoreResult<Vec<(String, String, String, i64)>> {
    let rows = sqlx::query(CREDENTIALS_DUE).bind(now_ms).bind(limit).fetch_all(store.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("tenant_id")?,
                row.try_get("credential_id")?,
                row.try_get("device_id")?,
                row.try_get("challenge_deadline_s")?,
            ))
        })
        .collect()
}

/// Open challenges whose deadline has passed.
pub async fn overdue(store: &Store, now_ms: i64, limit: i64) -> StoreResult<Vec<Challenge>> {
    let rows = sqlx::query(
        "SELECT * FROM challenges WHERE consumed_at_ms IS NULL AND missed_at_ms IS NULL \
         AND deadline_ms < $1 ORDER BY deadline_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(challenge_from_row).collect()
}

/// Marks an overdue challenge missed; false when it was answered or already marked.
pub async fn mark_missed(tx: &mut Tx, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE challenges SET missed_at_ms = $2 WHERE id = $1 AND consumed_at_ms IS NULL \
         AND missed_at_ms IS NULL AND deadline_ms < $2",
    )
    .bind(id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_event(tx: &mut Tx, e: &PresenceEvent) -> StoreResult<()> {
    sqlx::query(INSERT_EVENT)
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.outcome)
        .bind(&e.device_id)
        .bind(&e.worker_external_id)
        .bind(&e.credential_id)
        .bind(&e.challenge_id)
        .bind(e.at_ms)
        .bind(&e.source_ip)
        .bind(&e.detail)
        .execute(&mut **tx)
        .await?;
    crate::telemetry::record_presence(&e.outcome);
    Ok(())
}

const INSERT_EVENT: &str = "INSERT INTO presence_events (id, tenant_id, outcome, device_id, worker_external_id, \
     credential_id, challenge_id, at_ms, source_ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// A verified presence answer, recorded in one transaction on the direct
/// path (crate::store::append_queue::record_answer): the challenge consumed,
/// the credential's counter and presence time, the `ok` event, the posture
/// report, the risk event.
#[derive(Debug, Clone)]
pub struct RecordedAnswer {
    pub credential_id: String,
    pub sign_count: i64,
    /// The `ok` event; its challenge, tenant, device and time are the answer's.
    pub event: PresenceEvent,
    /// The signed posture report: its SHA-256 (hex) and its JSON.
    pub posture: Option<(String, String)>,
    pub risk_event: Option<super::risk_events::StoredEvent>,
}

/// Why an answer was not recorded (nothing of it was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerRefused {
    /// The challenge was consumed, missed or past its deadline meanwhile.
    Replayed,
    /// Another answer stored a counter at least as high meanwhile.
    CounterBehind,
}

/// Records `a` in the caller's transaction, all or nothing (a savepoint):
/// the risk event's position, or why it was refused.
pub(super) fn record_answer_direct(
    conn: &rusqlite::Connection,
    a: &RecordedAnswer,
) -> StoreResult<Result<Option<super::risk_events::Position>, AnswerRefused>> {
    conn.execute_batch("SAVEPOINT answer")?;
    let recorded = record_answer_steps(conn, a);
    match &recorded {
        Ok(Ok(_)) => conn.execute_batch("RELEASE answer")?,
        _ => conn.execute_batch("ROLLBACK TO answer; RELEASE answer")?,
    }
    recorded
}

fn record_answer_steps(
    conn: &rusqlite::Connection,
    a: &RecordedAnswer,
) -> StoreResult<Result<Option<super::risk_events::Position>, AnswerRefused>> {
    use super::direct::execute;
    let e = &a.event;
    if execute(&mut conn.prepare_cached(CONSUME)?, &[&e.challenge_id, &e.at_ms])? != 1 {
        return Ok(Err(AnswerRefused::Replayed));
    }
    let counted = super::credentials::RECORD_PRESENCE;
    if execute(&mut conn.prepare_cached(counted)?, &[&a.credential_id, &a.sign_count, &e.at_ms])? != 1 {
        return Ok(Err(AnswerRefused::CounterBehind));
    }
    execute(
        &mut conn.prepare_cached(INSERT_EVENT)?,
        &[
            &e.id,
            &e.tenant_id,
            &e.outcome,
            &e.device_id,
            &e.worker_external_id,
            &e.credential_id,
            &e.challenge_id,
            &e.at_ms,
            &e.source_ip,
            &e.detail,
        ],
    )?;
    if let Some((sha256_hex, json)) = &a.posture {
        execute(
            &mut conn.prepare_cached(super::posture::INSERT)?,
            &[&e.id, &e.tenant_id, &e.device_id, &e.at_ms, sha256_hex, json],
        )?;
    }
    let position = match &a.risk_event {
        Some(event) => Some(super::risk_events::append_direct(conn, event)?),
        None => None,
    };
    Ok(Ok(position))
}

/// Newest-first presence events of the given outcomes (a list like
/// `,missed,failed,`), after the cursor.
pub async fn list_events(
    store: &Store,
    tenant_id: &str,
    filter: &EventFilter,
    outcomes: &str,
    after: &Cursor,
    limit: i64,
) -> StoreResult<Vec<PresenceEvent>> {
    let rows = sqlx::query(
        "SELECT * FROM presence_events WHERE tenant_id = $1 \
         AND ($2 = 0 OR at_ms >= $2) AND ($3 = 0 OR at_ms < $3) \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND $6 LIKE '%,' || outcome || ',%' \
         AND (at_ms < $7 OR (at_ms = $7 AND id < $8)) \
         ORDER BY at_ms DESC, id DESC LIMIT $9",
    )
    .bind(tenant_id)
    .bind(filter.since_ms)
    .bind(filter.until_ms)
    .bind(&filter.worker_external_id)
    .bind(&filter.device_id)
    .bind(outcomes)
    .bind(after.at_ms)
    .bind(&after.id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// The newest million presence events since `since_ms`, all tenants, oldest
/// first (engine warm-up before the shared event log has any rows).
pub async fn recent_events(store: &Store, since_ms: i64) -> StoreResult<Vec<PresenceEvent>> {
    let rows =
        sqlx::query("SELECT * FROM presence_events WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT 1000000")
            .bind(since_ms)
            .fetch_all(store.pool())
            .await?;
    rows.iter().rev().map(event_from_row).collect()
}

/// The device of `worker` whose newest successful answer since `since_ms` came from `source_ip`
/// (as tetherd observed it). Scans only the worker's answers inside the window, newest first.
pub async fn device_answering_from(
    store: &Store,
    tenant_id: &str,
    worker_external_id: &str,
    source_ip: &str,
    since_ms: i64,
) -> StoreResult<Option<String>> {
    let row = sqlx::query(
        "SELECT device_id FROM presence_events WHERE tenant_id = $1 AND worker_external_id = $2 \
         AND at_ms >= $3 AND outcome = 'ok' AND source_ip = $4 ORDER BY at_ms DESC, id DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(worker_external_id)
    .bind(since_ms)
    .bind(source_ip)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| r.try_get("device_id")).transpose().map_err(Into::into)
}

/// One successful presence answer: when tetherd accepted it and when its
/// challenge was issued (None when the challenge row is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub answered_at_ms: i64,
    pub issued_at_ms: Option<i64>,
}

/// [`answers_of_device`]'s list: a range of `presence_events_tenant_device_at`
/// already in time order, and the challenge by its key; its count, the same
/// range (`service/tests/query_plans.rs`). BETWEEN (`$4` inclusive) because
/// with `>= $3 AND < $4` SQLite 3.51 walks the whole tenant's day on
/// `presence_events_tenant_at` instead.
pub const DEVICE_ANSWERS: &str = "SELECT e.at_ms, c.issued_at_ms FROM presence_events e \
     LEFT JOIN challenges c ON c.id = e.challenge_id WHERE e.tenant_id = $1 AND e.device_id = $2 \
     AND e.at_ms BETWEEN $3 AND $4 AND e.outcome = 'ok' ORDER BY e.at_ms, e.id LIMIT $5";
pub const DEVICE_ANSWER_COUNT: &str = "SELECT COUNT(*) AS n FROM presence_events WHERE tenant_id = $1 \
     AND device_id = $2 AND at_ms BETWEEN $3 AND $4 AND outcome = 'ok'";

/// A device's successful answers in `[since_ms, until_ms)`, oldest first, at
/// most `limit`; and how many there are in all (counted only when the limit
/// cut the list).
pub async fn answers_of_device(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    since_ms: i64,
    until_ms: i64,
    limit: i64,
) -> StoreResult<(Vec<Answer>, i64)> {
    let last_ms = until_ms.saturating_sub(1);
    let rows = sqlx::query(DEVICE_ANSWERS)
        .bind(tenant_id)
        .bind(device_id)
        .bind(since_ms)
        .bind(last_ms)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    let answers = rows
        .iter()
        .map(|r| Ok(Answer { answered_at_ms: r.try_get("at_ms")?, issued_at_ms: r.try_get("issued_at_ms")? }))
        .collect::<StoreResult<Vec<Answer>>>()?;
    if (answers.len() as i64) < limit {
        let total = answers.len() as i64;
        return Ok((answers, total));
    }
    let total: i64 = sqlx::query(DEVICE_ANSWER_COUNT)
        .bind(tenant_id)
        .bind(device_id)
        .bind(since_ms)
        .bind(last_ms)
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    Ok((answers, total))
}
