//! Posture reports kept with the presence answers they were signed with.

use super::{Store, StoreResult, Tx};
use sqlx::Row;
use std::collections::HashMap;

/// Records the report of the presence event `event_id`, in the answer's transaction.
pub(super) const INSERT: &str = "INSERT INTO presence_postures (event_id, tenant_id, device_id, at_ms, \
     posture_sha256, posture_json) VALUES ($1, $2, $3, $4, $5, $6)";

pub async fn insert(
    tx: &mut Tx,
    event_id: &str,
    tenant_id: &str,
    device_id: &str,
    at_ms: i64,
    sha256_hex: &str,
    json: &str,
) -> StoreResult<()> {
    sqlx::query(INSERT)
        .bind(event_id)
        .bind(tenant_id)
        .bind(device_id)
        .bind(at_ms)
        .bind(sha256_hex)
        .bind(json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reports recorded since `since_ms`, by presence event id (for warming the risk engine).
pub async fn recent(store: &Store, since_ms: i64) -> StoreResult<HashMap<String, String>> {
    let rows = sqlx::query("SELECT event_id, posture_json FROM presence_postures WHERE at_ms >= $1")
        .bind(since_ms)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(|row| Ok((row.try_get("event_id")?, row.try_get("posture_json")?))).collect()
}

/// The digest and report stored with one presence event, if it carried one.
pub async fn for_event(store: &Store, event_id: &str) -> StoreResult<Option<(String, String)>> {
    let row = sqlx::query("SELECT posture_sha256, posture_json FROM presence_postures WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok((r.try_get("posture_sha256")?, r.try_get("posture_json")?))).transpose()
}
