//! Risk flags raised on devices, workers and sessions.

use super::presence::{Cursor, EventFilter};
use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct FlagRecord {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    /// info, review, high.
    pub severity: String,
    /// open, acknowledged, resolved.
    pub status: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub session_id: String,
    pub raised_at_ms: i64,
    pub evidence_json: String,
}

/// A flag as read back, with its latest review.
#[derive(Debug, Clone)]
pub struct StoredFlag {
    pub flag: FlagRecord,
    pub note: String,
    pub updated_at_ms: Option<i64>,
    pub updated_by: String,
}

fn from_row(row: &AnyRow) -> StoreResult<FlagRecord> {
    Ok(FlagRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        status: row.try_get("status")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        credential_id: row.try_get("credential_id")?,
        session_id: row.try_get("session_id")?,
        raised_at_ms: row.try_get("raised_at_ms")?,
        evidence_json: row.try_get("evidence_json")?,
    })
}

fn stored_from_row(row: &AnyRow) -> StoreResult<StoredFlag> {
    Ok(StoredFlag {
        flag: from_row(row)?,
        note: row.try_get("note")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        updated_by: row.try_get("updated_by")?,
    })
}

pub async fn insert(tx: &mut Tx, f: &FlagRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO flags (id, tenant_id, kind, severity, status, device_id, worker_external_id, \
         credential_id, session_id, raised_at_ms, evidence_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&f.id)
    .bind(&f.tenant_id)
    .bind(&f.kind)
    .bind(&f.severity)
    .bind(&f.status)
    .bind(&f.device_id)
    .bind(&f.worker_external_id)
    .bind(&f.credential_id)
    .bind(&f.session_id)
    .bind(f.raised_at_ms)
    .bind(&f.evidence_json)
    .execute(&mut **tx)
    .await?;
    crate::telemetry::record_flag(&f.kind, &f.severity);
    Ok(())
}

/// Stores an engine flag unless one with the same `dedupe_key` (finding and
/// window) exists for its tenant, kind and device: another replica evaluating
/// the same events raised it first. True when this call stored it.
pub async fn insert_deduped(tx: &mut Tx, f: &FlagRecord, dedupe_key: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO flags (id, tenant_id, kind, severity, status, device_id, worker_external_id, \
         credential_id, session_id, raised_at_ms, evidence_json, dedupe_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant_id, kind, device_id, dedupe_key) DO NOTHING",
    )
    .bind(&f.id)
    .bind(&f.tenant_id)
    .bind(&f.kind)
    .bind(&f.severity)
    .bind(&f.status)
    .bind(&f.device_id)
    .bind(&f.worker_external_id)
    .bind(&f.credential_id)
    .bind(&f.session_id)
    .bind(f.raised_at_ms)
    .bind(&f.evidence_json)
    .bind(dedupe_key)
    .execute(&mut **tx)
    .await?;
    let stored = done.rows_affected() == 1;
    if stored {
        crate::telemetry::record_flag(&f.kind, &f.severity);
    }
    Ok(stored)
}

/// Kinds of unresolved high-severity flags on the device or the worker.
/// The kinds of flag open (not resolved) on a device or its worker, each with
/// every severity it is open at.
/// [`open_kinds`]: two index searches (by device, by worker), never a scan
/// of the tenant's flags (`service/tests/risk_log_order.rs` checks the plan).
/// Unsorted: an ORDER BY would have SQLite walk the tenant's flags in kind order instead.
pub const OPEN_KINDS: &str = "SELECT kind, severity FROM flags WHERE tenant_id = $1 AND device_id = $2 \
     AND status <> 'resolved' UNION ALL SELECT kind, severity FROM flags WHERE tenant_id = $1 \
     AND worker_external_id = $3 AND status <> 'resolved'";

pub async fn open_kinds(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    worker_external_id: &str,
) -> StoreResult<Vec<(String, String)>> {
    let rows = sqlx::query(OPEN_KINDS)
        .bind(tenant_id)
        .bind(device_id)
        .bind(worker_external_id)
        .fetch_all(store.pool())
        .await?;
    let mut kinds = rows
        .iter()
        .map(|r| Ok((r.try_get("kind")?, r.try_get("severity")?)))
        .collect::<StoreResult<Vec<(String, String)>>>()?;
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

pub async fn list(
    store: &Store,
    tenant_id: &str,
    filter: &EventFilter,
    status: &str,
    after: &Cursor,
    limit: i64,
) -> StoreResult<Vec<StoredFlag>> {
    let rows = sqlx::query(
        "SELECT * FROM flags WHERE tenant_id = $1 \
         AND ($2 = 0 OR raised_at_ms >= $2) AND ($3 = 0 OR raised_at_ms < $3) \
         AND ($4 = '' OR worker_external_id = $4) AND ($5 = '' OR device_id = $5) \
         AND ($6 = '' OR status = $6) \
         AND (raised_at_ms < $7 OR (raised_at_ms = $7 AND id < $8)) \
         ORDER BY raised_at_ms DESC, id DESC LIMIT $9",
    )
    .bind(tenant_id)
    .bind(filter.since_ms)
    .bind(filter.until_ms)
    .bind(&filter.worker_external_id)
    .bind(&filter.device_id)
    .bind(status)
    .bind(after.at_ms)
    .bind(&after.id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(stored_from_row).collect()
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<StoredFlag>> {
    let row = sqlx::query("SELECT * FROM flags WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(stored_from_row).transpose()
}

/// Moves a flag from `from` to `to`; false when its status was no longer `from`
/// (another analyst changed it first).
pub async fn review(
    tx: &mut Tx,
    id: &str,
    from: &str,
    to: &str,
    note: &str,
    by: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE flags SET status = $3, note = $4, updated_by = $5, updated_at_ms = $6 WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(note)
    .bind(by)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// [`unresolved_since`]: a backwards range of `flags_tenant_at`, no sort
/// (`service/tests/query_plans.rs`).
pub const UNRESOLVED_SINCE: &str = "SELECT * FROM flags WHERE tenant_id = $1 AND raised_at_ms >= $2 \
     AND status <> 'resolved' ORDER BY raised_at_ms DESC, id DESC LIMIT $3";

/// The tenant's unresolved flags (open or acknowledged) raised since
/// `since_ms`, newest first, at most `limit`: the farm view's input. A range
/// search of `flags_tenant_at`.
pub async fn unresolved_since(
    store: &Store,
    tenant_id: &str,
    since_ms: i64,
    limit: i64,
) -> StoreResult<Vec<FlagRecord>> {
    let rows = sqlx::query(UNRESOLVED_SINCE).bind(tenant_id).bind(since_ms).bind(limit).fetch_all(store.pool()).await?;
    rows.iter().map(from_row).collect()
}
