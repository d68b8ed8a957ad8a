//! API keys: only a hash of each secret is stored.

use super::columns::{Columns, FromColumns};
use super::{Store, StoreResult, Tx};
use sqlx::Row;

/// A stored hash of an API-key secret: the `api_keys` columns that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHash {
    pub secret_hash: Vec<u8>,
    pub hash_scheme: String,
    /// Hex; empty for the legacy scheme.
    pub salt: String,
    /// The pepper that made `secret_hash`; None for the legacy scheme.
    pub pepper_id: Option<String>,
}

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
    /// The pepper that made `secret_hash` (`pepper::Pepper::current_id`); None for the `sha256`
    /// scheme and for keys hashed before ids were recorded and not used since.
    pub pepper_id: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

fn from_row(row: &impl Columns) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: row.column("id")?,
        tenant_id: row.column("tenant_id")?,
        name: row.column("name")?,
        role: row.column("role")?,
        secret_hash: row.column("secret_hash")?,
        hash_scheme: row.column("hash_scheme")?,
        salt: row.column("salt")?,
        pepper_id: row.column("pepper_id")?,
        expires_at_ms: row.column("expires_at_ms")?,
        created_at_ms: row.column("created_at_ms")?,
        last_used_at_ms: row.column("last_used_at_ms")?,
        revoked_at_ms: row.column("revoked_at_ms")?,
    })
}

impl FromColumns for ApiKey {
    fn from_columns(row: &impl Columns) -> StoreResult<ApiKey> {
        from_row(row)
    }
}

pub async fn insert(tx: &mut Tx, key: &ApiKey) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash, hash_scheme, salt, expires_at_ms, \
         created_at_ms, pepper_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .bind(&key.pepper_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const GET: &str = "SELECT * FROM api_keys WHERE id = $1";

pub async fn get(store: &Store, id: &str) -> StoreResult<Option<ApiKey>> {
    // Every authenticated call reads its key: on the hot path (crate::store::direct).
    store.get_by_key(GET, &[id]).await
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

/// Replaces the stored hash of a key whose hash is still `old_hash`; false
/// when it changed meanwhile (another replica re-hashed it first) or the key
/// is gone.
pub async fn rehash(store: &Store, id: &str, old_hash: &[u8], new: &StoredHash) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET secret_hash = $3, hash_scheme = $4, salt = $5, pepper_id = $6 \
         WHERE id = $1 AND secret_hash = $2",
    )
    .bind(id)
    .bind(old_hash)
    .bind(&new.secret_hash)
    .bind(&new.hash_scheme)
    .bind(&new.salt)
    .bind(&new.pepper_id)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Live (unrevoked, unexpired) keys of every tenant hashed under `scheme`,
/// counted by the pepper that made their hash (None: not recorded).
pub async fn live_counts_by_pepper(
    store: &Store,
    scheme: &str,
    now_ms: i64,
) -> StoreResult<Vec<(Option<String>, i64)>> {
    let rows = sqlx::query(
        "SELECT pepper_id, COUNT(*) AS n FROM api_keys WHERE hash_scheme = $1 AND revoked_at_ms IS NULL \
         AND (expires_at_ms IS NULL OR expires_at_ms > $2) GROUP BY pepper_id",
    )
    .bind(scheme)
    .bind(now_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|row| Ok((row.try_get("pepper_id")?, row.try_get("n")?))).collect()
}
