//! Access-decision sessions recorded for every gateway check.

use super::presence::{Cursor, EventFilter};
use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub tenant_id: String,
    pub worker_external_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub source_ip: String,
    pub gateway_id: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// JSON array of `{"code": "...", "detail": "..."}`.
    pub reasons_json: String,
    /// The same, for tier denials monitor mode did not enforce (`[]` when none).
    pub would_deny_json: String,
    pub at_ms: i64,
}

fn from_row(row: &AnyRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        device_id: row.try_get("device_id")?,
        credential_id: row.try_get("credential_id")?,
        source_ip: row.try_get("source_ip")?,
        gateway_id: row.try_get("gateway_id")?,
        decision: row.try_get("decision")?,
        reasons_json: row.try_get("reasons_json")?,
        would_deny_json: row.try_get("would_deny_json")?,
        at_ms: row.try_get("at_ms")?,
    })
}

/// Records one session in the caller's transaction: access checks queue theirs
/// (crate::store::append_queue::record_session), which shares transactions.
pub(super) async fn insert_in(tx: &mut Tx, s: &SessionRecord) -> StoreResult<()> {
    sqlx::query(INSERT)
        .bind(&s.id)
        .bind(&s.tenant_id)
        .bind(&s.worker_external_id)
        .bind(&s.device_id)
        .bind(&s.credential_id)
        .bind(&s.source_ip)
        .bind(&s.gateway_id)
        .bind(&s.decision)
        .bind(&s.reasons_json)
        .bind(s.at_ms)
        .bind(&s.would_deny_json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// [`insert_in`] on the SQLite hot path (crate::store::direct), in the caller's transaction.
pub(super) fn insert_direct(conn: &rusqlite::Connection, s: &SessionRecord) -> StoreResult<()> {
    let mut statement = conn.prepare_cached(INSERT)?;
    super::direct::execute(
        &mut statement,
        &[
            &s.id,
            &s.tenant_id,
            &s.worker_external_id,
            &s.device_id,
            &s.credential_id,
            &s.source_ip,
            &s.gateway_id,
            &s.decision,
            &s.reasons_json,
            &s.at_ms,
            &s.would_deny_json,
        ],
    )?;
    Ok(())
}

const INSERT: &str = "INSERT INTO sessions (id, tenant_id, worker_external_id, device_id, credential_id, source_ip, \
     gateway_id, decision, reasons_json, at_ms, would_deny_json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Newest first; `decision` empty = both.
pub async fn list(
    store: &Store,
    tenant_id: &str,
    filter: &EventFilter,
    decision: &str,
    after: &Cursor,
    limit: i64,
) -> StoreResult<Vec<SessionRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM sessions WHERE tenant_id = $1 \
         AND ($2 = 0 OR at_ms >= $2) AND ($3 = 0 OR at_ms < $3) \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND ($6 = '' OR decision = $6) \
         AND (at_ms < $7 OR (at_ms = $7 AND id < $8)) \
         ORDER BY at_ms DESC, id DESC LIMIT $9",
    )
    .bind(tenant_id)
    .bind(filter.since_ms)
    .bind(filter.until_ms)
    .bind(&filter.worker_external_id)
    .bind(&filter.device_id)
    .bind(decision)
    .bind(after.at_ms)
    .bind(&after.id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The newest million sessions since `since_ms`, all tenants, oldest first
/// (engine warm-up before the shared event log has any rows).
pub async fn recent(store: &Store, since_ms: i64) -> StoreResult<Vec<SessionRecord>> {
    let rows = sqlx::query("SELECT * FROM sessions WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT 1000000")
        .bind(since_ms)
        .fetch_all(store.pool())
        .await?;
    rows.iter().rev().map(from_row).collect()
}
