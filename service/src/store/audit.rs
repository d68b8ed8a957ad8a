//! Storage of the per-tenant audit hash chains.

use super::{Store, StoreError, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;
use tether_attestation::audit_chain::AuditRecord;

fn from_row(row: &AnyRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details_json: row.try_get("details_json")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Starts a tenant's chain (in the tenant's creating transaction).
pub async fn create_head(tx: &mut Tx, tenant_id: &str, genesis_hash: &str) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)")
        .bind(tenant_id)
        .bind(genesis_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Claims the next sequence number and returns it with the previous hash.
/// The row stays locked until the transaction ends.
pub async fn claim_next(tx: &mut Tx, tenant_id: &str) -> StoreResult<(i64, String)> {
    let row = sqlx::query("UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq, hash")
        .bind(tenant_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("tenant {tenant_id} has no audit chain head")))?;
    Ok((row.try_get("seq")?, row.try_get("hash")?))
}

pub async fn append(tx: &mut Tx, record: &AuditRecord) -> StoreResult<()> {
    sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant_id = $1")
        .bind(&record.tenant_id)
        .bind(&record.hash)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, seq, at_ms, actor, action, target, details_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&record.tenant_id)
    .bind(record.seq)
    .bind(record.at_ms)
    .bind(&record.actor)
    .bind(&record.action)
    .bind(&record.target)
    .bind(&record.details_json)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Entries with `seq > after`, oldest first.
pub async fn list(store: &Store, tenant_id: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
    let rows = sqlx::query("SELECT * FROM audit_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
        .bind(tenant_id)
        .bind(after)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// The chain head as the server holds it: (seq, hash).
pub async fn head(store: &Store, tenant_id: &str) -> StoreResult<(i64, String)> {
    let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("tenant {tenant_id} has no audit chain head")))?;
    Ok((row.try_get("seq")?, row.try_get("hash")?))
}
