//! FIDO metadata in force per scope: the operator's BLOB (scope `""`) and each tenant's import.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreResult, Tx};

/// The scope of the operator's `--mds-file`, which applies to every tenant.
pub const OPERATOR_SCOPE: &str = "";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdsRow {
    pub scope: String,
    pub no: i64,
    pub sha256: String,
    pub next_update: String,
    pub entries: i64,
    pub compromised: i64,
    pub uv_bypass: i64,
    pub index_json: String,
    pub loaded_at_ms: i64,
}

fn from_row(row: &AnyRow) -> StoreResult<MdsRow> {
    Ok(MdsRow {
        scope: row.try_get("scope")?,
        no: row.try_get("no")?,
        sha256: row.try_get("sha256")?,
        next_update: row.try_get("next_update")?,
        entries: row.try_get("entries")?,
        compromised: row.try_get("compromised")?,
        uv_bypass: row.try_get("uv_bypass")?,
        index_json: row.try_get("index_json")?,
        loaded_at_ms: row.try_get("loaded_at_ms")?,
    })
}

/// The `no` and SHA-256 of the BLOB in force for `scope`: enough to tell whether a cached copy
/// is still current without reading the index.
pub async fn version(store: &Store, scope: &str) -> StoreResult<Option<(i64, String)>> {
    let row = sqlx::query("SELECT no, sha256 FROM mds_blobs WHERE scope = $1")
        .bind(scope)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok((r.try_get("no")?, r.try_get("sha256")?))).transpose()
}

pub async fn get(store: &Store, scope: &str) -> StoreResult<Option<MdsRow>> {
    let row = sqlx::query("SELECT * FROM mds_blobs WHERE scope = $1").bind(scope).fetch_optional(store.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The row now holds the new BLOB; `previous` is the `no` it replaced.
    Advanced { previous: Option<i64> },
    /// The same BLOB (same `no` and contents) is already in force.
    Unchanged,
    /// Refused: the BLOB in force has a higher `no`, or the same `no` with other contents.
    Refused { current_no: i64, same_no_other_contents: bool },
}

/// Puts `row` in force for its scope only if its `no` is higher than the one in force. The
/// comparison is in the statement itself, so two replicas importing at once cannot move it back.
pub async fn advance(tx: &mut Tx, row: &MdsRow) -> StoreResult<Advance> {
    let before = sqlx::query("SELECT no, sha256 FROM mds_blobs WHERE scope = $1")
        .bind(&row.scope)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| -> StoreResult<(i64, String)> { Ok((r.try_get("no")?, r.try_get("sha256")?)) })
        .transpose()?;
    if let Some((no, sha256)) = &before
        && *no >= row.no
    {
        return Ok(if *no == row.no && *sha256 == row.sha256 {
            Advance::Unchanged
        } else {
            Advance::Refused { current_no: *no, same_no_other_contents: *no == row.no }
        });
    }
    let written = sqlx::query(
        "INSERT INTO mds_blobs (scope, no, sha256, next_update, entries, compromised, uv_bypass, index_json, \
         loaded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (scope) DO UPDATE SET no = excluded.no, sha256 = excluded.sha256, \
         next_update = excluded.next_update, entries = excluded.entries, compromised = excluded.compromised, \
         uv_bypass = excluded.uv_bypass, index_json = excluded.index_json, loaded_at_ms = excluded.loaded_at_ms \
         WHERE mds_blobs.no < excluded.no",
    )
    .bind(&row.scope)
    .bind(row.no)
    .bind(&row.sha256)
    .bind(&row.next_update)
    .bind(row.entries)
    .bind(row.compromised)
    .bind(row.uv_bypass)
    .bind(&row.index_json)
    .bind(row.loaded_at_ms)
    .execute(&mut **tx)
    .await?;
    if written.rows_affected() == 0 {
        // Another writer put a newer BLOB in force between the read and the write.
        let current_no = sqlx::query("SELECT no FROM mds_blobs WHERE scope = $1")
            .bind(&row.scope)
            .fetch_one(&mut **tx)
            .await?
            .try_get("no")?;
        return Ok(Advance::Refused { current_no, same_no_other_contents: current_no == row.no });
    }
    Ok(Advance::Advanced { previous: before.map(|(no, _)| no) })
}
