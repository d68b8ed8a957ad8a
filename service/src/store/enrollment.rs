//! One-time enrollment tokens and the WebAuthn ceremonies they open.

use super::{Store, StoreResult, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct EnrollmentToken {
    pub id: String,
    pub tenant_id: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub secret_hash: Vec<u8>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct EnrollmentSession {
    pub id: String,
    pub tenant_id: String,
    pub token_id: String,
    pub challenge: Vec<u8>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

fn token_from_row(row: &AnyRow) -> StoreResult<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        device_id: row.try_get("device_id")?,
        worker_external_id: row.try_get("worker_external_id")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        used_at_ms: row.try_get("used_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

fn session_from_row(row: &AnyRow) -> StoreResult<EnrollmentSession> {
    Ok(EnrollmentSession {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        token_id: row.try_get("token_id")?,
        challenge: row.try_get("challenge")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

pub async fn insert_token(tx: &mut Tx, t: &EnrollmentToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO enrollment_tokens (id, tenant_id, device_id, worker_external_id, secret_hash, \
         created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.tenant_id)
    .bind(&t.device_id)
    .bind(&t.worker_external_id)
    .bind(&t.secret_hash)
    .bind(t.created_at_ms)
    .bind(t.expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn token_by_hash(store: &Store, secret_hash: &[u8]) -> StoreResult<Option<EnrollmentToken>> {
    let row = sqlx::query("SELECT * FROM enrollment_tokens WHERE secret_hash = $1")
        .bind(secret_hash)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(token_from_row).transpose()
}

pub async fn token_by_id(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Option<EnrollmentToken>> {
    let row = sqlx::query("SELECT * FROM enrollment_tokens WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(token_from_row).transpose()
}

pub async fn tokens_for_device(store: &Store, tenant_id: &str, device_id: &str) -> StoreResult<Vec<EnrollmentToken>> {
    let rows = sqlx::query(
        "SELECT * FROM enrollment_tokens WHERE tenant_id = $1 AND device_id = $2 \
         ORDER BY created_at_ms DESC, id",
    )
    .bind(tenant_id)
    .bind(device_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(token_from_row).collect()
}

pub async fn revoke_token(tx: &mut Tx, tenant_id: &str, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE enrollment_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $3) \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the token used if, and only if, it is still usable. Exactly one of
/// any number of concurrent callers gets `true`.
pub async fn consume_token(tx: &mut Tx, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE enrollment_tokens SET used_at_ms = $2 WHERE id = $1 AND used_at_ms IS NULL \
         AND revoked_at_ms IS NULL AND expires_at_ms > $2",
    )
    .bind(id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_session(store: &Store, s: &EnrollmentSession) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO enrollment_sessions (id, tenant_id, token_id, challenge, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.id)
    .bind(&s.tenant_id)
    .bind(&s.token_id)
    .bind(&s.challenge)
    .bind(s.created_at_ms)
    .bind(s.expires_at_ms)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn session(store: &Store, id: &str) -> StoreResult<Option<EnrollmentSession>> {
    let row =
        sqlx::query("SELECT * FROM enrollment_sessions WHERE id = $1").bind(id).fetch_optional(store.pool()).await?;
    row.as_ref().map(session_from_row).transpose()
}

pub async fn finish_session(tx: &mut Tx, id: &str, now_ms: i64) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE enrollment_sessions SET finished_at_ms = $2 WHERE id = $1 AND finished_at_ms IS NULL")
            .bind(id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}
