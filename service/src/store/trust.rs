//! Each tenant's trust store: attestation root certificates.

use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct TrustAnchorRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub subject: String,
    pub sha256: String,
    pub der: Vec<u8>,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub added_at_ms: i64,
}

fn from_row(row: &AnyRow) -> StoreResult<TrustAnchorRecord> {
    Ok(TrustAnchorRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        subject: row.try_get("subject")?,
        sha256: row.try_get("sha256")?,
        der: row.try_get("der")?,
        not_before_ms: row.try_get("not_before_ms")?,
        not_after_ms: row.try_get("not_after_ms")?,
        added_at_ms: row.try_get("added_at_ms")?,
    })
}

/// Adds the anchor unless the tenant already has the same certificate;
/// returns the stored row either way.
pub async fn add(tx: &mut Tx, a: &TrustAnchorRecord) -> StoreResult<TrustAnchorRecord> {
    sqlx::query(
        "INSERT INTO trust_anchors (id, tenant_id, name, subject, sha256, der, not_before_ms, \
         not_after_ms, added_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, sha256) DO NOTHING",
    )
    .bind(&a.id)
    .bind(&a.tenant_id)
    .bind(&a.name)
    .bind(&a.subject)
    .bind(&a.sha256)
    .bind(&a.der)
    .bind(a.not_before_ms)
    .bind(a.not_after_ms)
    .bind(a.added_at_ms)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query("SELECT * FROM trust_anchors WHERE tenant_id = $1 AND sha256 = $2")
        .bind(&a.tenant_id)
        .bind(&a.sha256)
        .fetch_one(&mut **tx)
        .await?;
    from_row(&row)
}

pub async fn list(store: &Store, tenant_id: &str) -> StoreResult<Vec<TrustAnchorRecord>> {
    let rows = sqlx::query("SELECT * FROM trust_anchors WHERE tenant_id = $1 ORDER BY added_at_ms, id")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<TrustAnchorRecord>> {
    let row = sqlx::query("SELECT * FROM trust_anchors WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn remove(tx: &mut Tx, tenant_id: &str, id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM trust_anchors WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
