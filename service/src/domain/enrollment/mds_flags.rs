//! Credentials enrolled before the operator's FIDO metadata marked their model: flagged when a
//! BLOB is put in force. Apart from `mds.rs` because it needs the whole app (store, audit),
//! which itself holds the catalog.

use tether_attestation::uuid::Uuid;

use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::enrollment::mds::MdsIndex;
use crate::store::flags::{self, FlagRecord};
use crate::store::{StoreError, credentials};
use crate::util::{new_id, now_ms};

/// The flag kind raised on credentials of a model the BLOB marks compromised (`high`: access
/// is denied) or as having a user-verification bypass (`review`).
pub const FLAG_KIND: &str = "authenticator_compromised";

/// Flags every active credential, in every tenant, of a model `index` lists: compromised or
/// revoked models `high`, user-verification bypass `review`. One flag per credential and status
/// (a reload of the same BLOB raises nothing new); each raised flag is audited in its tenant.
/// Returns how many flags were raised.
pub async fn flag_enrolled(app: &App, index: &MdsIndex) -> Result<usize, StoreError> {
    let mut raised = 0;
    for (listings, severity) in [(index.compromised_models(), "high"), (index.uv_bypass_models(), "review")] {
        let aaguids: Vec<String> = listings.keys().map(Uuid::to_string).collect();
        for credential in credentials::active_with_aaguids(&app.store, &aaguids).await? {
            let Some(listing) = credential.aaguid.parse::<Uuid>().ok().and_then(|a| listings.get(&a)) else {
                continue;
            };
            let evidence = serde_json::json!({
                "aaguid": credential.aaguid,
                "status": listing.status,
                "effective_date": listing.effective_date,
                "description": listing.description,
                "mds_no": index.no,
            });
            let flag = FlagRecord {
                id: new_id("flg"),
                tenant_id: credential.tenant_id.clone(),
                kind: FLAG_KIND.into(),
                severity: severity.into(),
                status: "open".into(),
                device_id: credential.device_id.clone(),
                worker_external_id: credential.worker_external_id.clone(),
                credential_id: credential.id.clone(),
                session_id: String::new(),
                raised_at_ms: now_ms(),
                evidence_json: evidence.to_string(),
            };
            let dedupe_key = format!("{}:{}", credential.id, listing.status);
            let mut tx = app.store.begin().await?;
            if flags::insert_deduped(&mut tx, &flag, &dedupe_key).await? {
                let details = serde_json::json!({
                    "kind": FLAG_KIND, "severity": severity, "credential": credential.id,
                    "status": listing.status, "mds_no": index.no,
                });
                audit::append(
                    &mut tx,
                    &credential.tenant_id,
                    &audit::Actor::system(),
                    "flag.raised",
                    &credential.device_id,
                    details,
                )
                .await?;
                raised += 1;
            }
            tx.commit().await?;
        }
    }
    Ok(raised)
}
