//! API keys: only a hash of each secret is stored.

use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub role: String,
    pub secret_hash: Vec<u8>,
    /// `hmac-sha256-v1` (salted, peppered) or `sha256` (keys made before hardening).
    pub hash_scheme: String,
    /// Hex; empty for the `sha256` scheme.
    pub salt: String,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

fn from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        secret_hash: row.try_get("secret_hash")?,
        hash_scheme: row.try_get("hash_scheme")?,
        salt: row.try_get("salt")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

pub async fn insert(tx: &mut Tx, key: &ApiKey) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash, hash_scheme, salt, expires_at_ms, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&key.id)
    .bind(&key.tenant_id)
    .bind(&key.name)
    .bind(&key.role)
    .bind(&key.secret_hash)
    .bind(&key.hash_scheme)
    .bind(&key.salt)
    .bind(key.expires_at_ms)
    .bind(key.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> StoreResult<Option<ApiKey>> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(store.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store, tenant_id: &str) -> StoreResult<Vec<ApiKey>> {
    let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms, id")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Returns false when no such key exists in the tenant.
pub async fn revoke(tx: &mut Tx, tenant_id: &str, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $3) \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch(store: &Store, id: &str, now_ms: i64) -> StoreResult<()> {
    sqlx::query("UPDATE api_keys SET last_used_at_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(store.pool())
        .await?;
    Ok(())
}
