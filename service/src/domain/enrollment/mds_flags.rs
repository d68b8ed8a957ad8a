//! Credentials enrolled before FIDO metadata marked their model: flagged when a BLOB is put in
//! force. Apart from `mds.rs` because it needs the whole app (store, audit), which itself holds
//! the catalog.

use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::enrollment::mds::{Listing, MdsIndex, Model};
use crate::store::credentials::{Credential, ModelColumn};
use crate::store::flags::{self, FlagRecord};
use crate::store::{StoreError, credentials};
use crate::util::{new_id, now_ms};

/// The flag kind raised on credentials of a model the BLOB marks compromised (`high`: access
/// is denied) or as having a user-verification bypass (`review`).
pub const FLAG_KIND: &str = "authenticator_compromised";

/// Flags every active credential of a model `index` lists — in every tenant for the operator's
/// BLOB, in `tenant_id` alone for a tenant's import: compromised or revoked models `high`,
/// user-verification bypass `review`. Models are matched by AAGUID and by attestation key id.
/// One flag per credential and status (loading the same BLOB again raises nothing new); each
/// raised flag is audited in its tenant. Returns how many flags were raised.
pub async fn flag_enrolled(app: &App, index: &MdsIndex, tenant_id: Option<&str>) -> Result<usize, StoreError> {
    let mut raised = 0;
    for (listings, severity) in [(index.compromised_models(), "high"), (index.uv_bypass_models(), "review")] {
        let mut aaguids = Vec::new();
        let mut key_ids = Vec::new();
        for model in listings.keys() {
            match model {
                Model::Aaguid(a) => aaguids.push(a.to_string()),
                Model::KeyId(k) => key_ids.push(k.clone()),
            }
        }
        let mut found = credentials::active_of_models(&app.store, tenant_id, ModelColumn::Aaguid, &aaguids).await?;
        found.extend(
            credentials::active_of_models(&app.store, tenant_id, ModelColumn::AttestationKeyId, &key_ids).await?,
        );
        for credential in found {
            let by_aaguid = credential.aaguid.parse().ok().map(Model::Aaguid);
            let by_key = Some(Model::KeyId(credential.attestation_key_id.clone()))
                .filter(|_| !credential.attestation_key_id.is_empty());
            let Some((model, listing)) =
                [by_aaguid, by_key].into_iter().flatten().find_map(|m| listings.get(&m).map(|l| (m, l)))
            else {
                continue;
            };
            if raise(app, index, &credential, &model, listing, severity).await? {
                raised += 1;
            }
        }
    }
    Ok(raised)
}

async fn raise(
    app: &App,
    index: &MdsIndex,
    credential: &Credential,
    model: &Model,
    listing: &Listing,
    severity: &str,
) -> Result<bool, StoreError> {
    let evidence = serde_json::json!({
        "aaguid": credential.aaguid,
        "model": model.to_string(),
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
    let raised = flags::insert_deduped(&mut tx, &flag, &dedupe_key).await?;
    if raised {
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
    }
    tx.commit().await?;
    Ok(raised)
}
