//! Putting FIDO metadata in force: the operator's BLOB (recorded once per new `no`, audited in
//! every tenant, since it changes every tenant's enrollments) and a tenant's own import
//! (`tether trust import-mds`: verified against the operator's MDS roots, never roots the tenant
//! brings, and applied to that tenant alone).

use std::sync::Arc;

use tether_attestation::mds::{self, MAX_BLOB_BYTES};
use time::OffsetDateTime;

use super::mds::MdsIndex;
use super::mds_flags::flag_enrolled;
use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tenancy::auth::Caller;
use crate::store::mds::{self as mds_store, Advance, MdsRow, OPERATOR_SCOPE};
use crate::store::{StoreResult, tenants};
use crate::util::now_ms;

fn row(scope: &str, index: &MdsIndex) -> MdsRow {
    MdsRow {
        scope: scope.to_owned(),
        no: i64::try_from(index.no).unwrap_or(i64::MAX),
        sha256: index.sha256.clone(),
        next_update: index.next_update.clone(),
        entries: i64::try_from(index.entries).unwrap_or(i64::MAX),
        compromised: i64::try_from(index.compromised_count()).unwrap_or(i64::MAX),
        uv_bypass: i64::try_from(index.uv_bypass_count()).unwrap_or(i64::MAX),
        index_json: index.to_json(),
        loaded_at_ms: now_ms(),
    }
}

fn summary(index: &MdsIndex, previous: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "no": index.no, "previous_no": previous, "sha256": index.sha256, "next_update": index.next_update,
        "entries": index.entries, "compromised": index.compromised_count(), "uv_bypass": index.uv_bypass_count(),
    })
}

fn refusal(current_no: i64, same_no_other_contents: bool, no: u64) -> String {
    if same_no_other_contents {
        format!("the BLOB reuses no {no} with different contents; refused")
    } else {
        format!("the BLOB's no {no} is older than the one in force ({current_no}); an MDS BLOB must not go backwards")
    }
}

/// Records the operator's BLOB as the one in force. A `no` lower than the highest ever put in
/// force (by any replica, before any restart) is refused; a new one is audited in every tenant.
pub async fn record_operator(app: &App, index: &MdsIndex) -> Result<(), String> {
    let store_error = |e: crate::store::StoreError| format!("recording the BLOB failed: {e}");
    let mut tx = app.store.begin().await.map_err(store_error)?;
    match mds_store::advance(&mut tx, &row(OPERATOR_SCOPE, index)).await.map_err(store_error)? {
        Advance::Unchanged => return Ok(()),
        Advance::Refused { current_no, same_no_other_contents } => {
            return Err(refusal(current_no, same_no_other_contents, index.no));
        }
        Advance::Advanced { previous } => {
            let details = serde_json::json!({ "source": "operator", "blob": summary(index, previous) });
            for tenant in tenants::list(&app.store).await.map_err(store_error)? {
                audit::append(&mut tx, &tenant.id, &audit::Actor::system(), "mds.loaded", "mds", details.clone())
                    .await
                    .map_err(store_error)?;
            }
        }
    }
    tx.commit().await.map_err(|e| store_error(e.into()))
}

/// What a tenant's import did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub index: Arc<MdsIndex>,
    /// The `no` it replaced; None for the tenant's first import.
    pub previous_no: Option<i64>,
    /// The same BLOB was already in force: nothing changed.
    pub unchanged: bool,
    pub stale: bool,
    /// Entries that could not be read, with why (skipped, never trusted).
    pub skipped: Vec<String>,
    /// Flags raised on the tenant's already-enrolled credentials.
    pub flagged: usize,
}

/// Verifies `blob` (the JWS text) against the operator's MDS roots at the current time and puts
/// it in force for the caller's tenant only.
pub async fn import_for_tenant(app: &App, caller: &Caller, blob: String) -> ApiResult<Imported> {
    if blob.len() > MAX_BLOB_BYTES {
        return Err(ApiError::invalid(format!(
            "the BLOB is {} bytes, more than the {MAX_BLOB_BYTES}-byte limit",
            blob.len()
        )));
    }
    let roots =
        app.mds_roots.get().cloned().ok_or_else(|| {
            ApiError::precondition("this server has no FIDO metadata roots configured; ask its operator")
        })?;
    let now = OffsetDateTime::now_utc();
    let verified = tokio::task::spawn_blocking(move || mds::verify_blob(blob.trim(), &roots, now))
        .await
        .map_err(|e| ApiError::Unavailable(format!("the BLOB verifier stopped: {e}")))?
        .map_err(|e| ApiError::invalid(format!("the FIDO metadata BLOB is refused: {e}")))?;
    let skipped = verified.skipped.iter().map(|s| format!("{} {}: {}", s.part, s.index, s.reason)).collect();
    let index = Arc::new(MdsIndex::from_blob(&verified));
    let stale = index.is_stale(now);
    let mut tx = app.store.begin().await?;
    let (previous_no, unchanged) = match mds_store::advance(&mut tx, &row(&caller.tenant_id, &index)).await? {
        Advance::Unchanged => (Some(i64::try_from(index.no).unwrap_or(i64::MAX)), true),
        Advance::Refused { current_no, same_no_other_contents } => {
            return Err(ApiError::precondition(refusal(current_no, same_no_other_contents, index.no)));
        }
        Advance::Advanced { previous } => {
            let details = serde_json::json!({ "source": "tenant", "blob": summary(&index, previous) });
            audit::append(
                &mut tx,
                &caller.tenant_id,
                &audit::Actor(caller.principal.clone()),
                "mds.imported",
                "mds",
                details,
            )
            .await?;
            (previous, false)
        }
    };
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    // Enrollment refuses these models from now on; the tenant's credentials enrolled before get
    // a flag (deduplicated, so an unchanged import raises nothing new).
    let flagged = flag_enrolled(app, &index, Some(&caller.tenant_id)).await?;
    Ok(Imported { index, previous_no, unchanged, stale, skipped, flagged })
}

/// The tenant's imported BLOB, if any, as recorded.
pub async fn tenant_status(app: &App, caller: &Caller) -> StoreResult<Option<MdsRow>> {
    mds_store::get(&app.store, &caller.tenant_id).await
}
