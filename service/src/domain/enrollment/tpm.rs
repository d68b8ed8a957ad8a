//! TPM 2.0 enrollment with credential activation (the Keylime / go-attestation protocol).
//!
//! BeginTpmEnrollment: the one-time token opens a ceremony; the EK certificate is verified
//! against the tenant's trust store (TPM manufacturer roots), its key must be the EK public
//! area sent, the EK must match the device's inventory pin (when pinned), and the AK must be a
//! restricted signing key fixed to the TPM. The service answers with TPM2_MakeCredential
//! output: a fresh 32-byte secret that only the TPM holding this EK *and* this AK can recover.
//!
//! FinishTpmEnrollment: the device returns the activated secret; when it matches (constant
//! time) the AK is bound to worker ↔ device in one transaction that consumes the token. The
//! AK public area stored here is the only key quotes are ever verified with.

use crate::domain::app::App;
use crate::domain::enrollment::{tenant_trust_store, usable_token};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tiers::{self, Verdict};
use crate::store::credentials::Credential;
use crate::store::enrollment::EnrollmentToken;
use crate::store::tpm::{TpmCredential, TpmEnrollment};
use crate::store::{StoreError, credentials, tenants, tpm as tpm_store};
use crate::util::{b64url, new_id, now_ms, random_bytes, sha256};
use tether_attestation::tpm::ek::{self, EkError};
use tether_attestation::tpm::{SystemRng, TpmPublic, ak, credential, ek_pin};

/// The device must return the activated secret within this time.
const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;
/// The credential kind of a TPM attestation key.
pub const KIND: &str = "tpm-ak";
/// EK certificates (with intermediates) and public areas larger than this are refused.
const MAX_EK_CERTIFICATE: usize = 32 * 1024;
const MAX_PUBLIC: usize = 4 * 1024;

pub struct Begun {
    pub enrollment: TpmEnrollment,
    pub token: EnrollmentToken,
    /// TPM2B_ID_OBJECT contents.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents.
    pub encrypted_secret: Vec<u8>,
}

/// The EK pin as stored and shown: hex of [`ek_pin`].
pub fn pin_hex(ek: &TpmPublic) -> String {
    hex::encode(ek_pin(&ek.key))
}

/// Validates an inventory pin given by an administrator: 64 hex digits, stored lowercase.
pub fn normalize_pin(pin: &str) -> ApiResult<String> {
    let pin = pin.trim().to_ascii_lowercase();
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "ek_pin must be 64 hex digits: the SHA-256 of the EK's SubjectPublicKeyInfo (DER)",
        ));
    }
    Ok(pin)
}

fn pin_refusal(pinned: &str, presented: &str) -> ApiError {
    ApiError::precondition(format!(
        "enrollment rejected: this device is pinned to a different TPM (EK pin {pinned}, presented {presented}); \
         a different TPM is refused — ask your administrator if the device's TPM was replaced"
    ))
}

pub async fn begin(
    app: &App,
    token_secret: &str,
    ek_public: &[u8],
    ek_certificate: &[u8],
    ak_public: &[u8],
) -> ApiResult<Begun> {
    let token = usable_token(app, token_secret).await?;
    let tenant = tenants::get(&app.store, &token.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("token {} names a missing tenant", token.id)))?;
    if ek_public.is_empty() || ak_public.is_empty() {
        return Err(ApiError::invalid("ek_public and ak_public (TPM2B_PUBLIC) are required"));
    }
    if ek_public.len() > MAX_PUBLIC || ak_public.len() > MAX_PUBLIC || ek_certificate.len() > MAX_EK_CERTIFICATE {
        return Err(ApiError::invalid("ek_public, ak_public or ek_certificate is too large"));
    }
    let ek = TpmPublic::parse(ek_public).map_err(|e| ApiError::invalid(format!("ek_public: {e}")))?;
    let ak = TpmPublic::parse(ak_public).map_err(|e| ApiError::invalid(format!("ak_public: {e}")))?;
    ak::check_ak_attributes(&ak).map_err(|e| ApiError::invalid(format!("the attestation key was rejected: {e}")))?;

    // The EK certificate: untrusted chains are "unattested" (refused unless the policy allows
    // unattested devices); a certificate that is malformed, is no EK certificate or certifies
    // another key is refused outright.
    let trust = tenant_trust_store(app, &tenant.id).await?;
    let (attestation, verified) = if ek_certificate.is_empty() {
        (Err("no EK certificate was sent".to_string()), None)
    } else {
        let certs =
            ek::read_certificates(ek_certificate).map_err(|e| ApiError::invalid(format!("ek_certificate: {e}")))?;
        let (leaf, intermediates) =
            certs.split_first().ok_or_else(|| ApiError::invalid("ek_certificate holds no certificate"))?;
        let now = time::OffsetDateTime::now_utc();
        let verify = || ek::verify_ek_certificate(leaf, intermediates, &trust, now);
        match crate::telemetry::verify(crate::telemetry::TPM_EK_CERTIFICATE, verify) {
            Ok(v) => {
                ek::ek_matches_certificate(&ek, &v)
                    .map_err(|e| ApiError::invalid(format!("the EK certificate was rejected: {e}")))?;
                (Ok(()), Some(v))
            }
            Err(e @ EkError::Chain(_)) => (Err(e.to_string()), None),
            Err(e) => return Err(ApiError::invalid(format!("the EK certificate was rejected: {e}"))),
        }
    };
    let tier = tiers::tpm_tier(attestation.is_ok());
    if let Err(reason) = &attestation
        && tiers::verdict(&tenant.policy, tier) == Verdict::Deny
    {
        return Err(ApiError::precondition(format!(
            "enrollment rejected: the TPM is not attested ({reason}); {} \
             (upload the TPM manufacturer's root with `tether trust add`)",
            tiers::refusal(tier)
        )));
    }
    let presented_pin = pin_hex(&ek);
    if let Some(pinned) = tpm_store::device_ek_pin(&app.store, &tenant.id, &token.device_id).await? {
        let pinned_bytes = hex::decode(&pinned)
            .map_err(|_| StoreError::Corrupt(format!("device {} has a malformed EK pin", token.device_id)))?;
        if ek::check_ek_pin(&ek.key, &pinned_bytes).is_err() {
            return Err(pin_refusal(&pinned, &presented_pin));
        }
    }

    let ak_name = ak.name();
    let secret = random_bytes::<32>();
    let made = credential::make_credential(&ek, &ak_name, &secret, &mut SystemRng::new())
        .map_err(|e| ApiError::invalid(format!("ek_public cannot be used for credential activation: {e}")))?;
    let now = now_ms();
    let (manufacturer, model, firmware, anchor) = match &verified {
        Some(v) => (
            v.manufacturer.clone().unwrap_or_default(),
            v.model.clone().unwrap_or_default(),
            v.firmware_version.clone().unwrap_or_default(),
            v.chain.last().cloned().unwrap_or_default(),
        ),
        None => Default::default(),
    };
    let enrollment = TpmEnrollment {
        id: new_id("tpe"),
        tenant_id: tenant.id.clone(),
        token_id: token.id.clone(),
        credential_id: b64url(&ak_name),
        ak_public: ak.tpm2b_bytes().map_err(|e| ApiError::invalid(format!("ak_public: {e}")))?,
        ek_pin: presented_pin,
        secret_hash: sha256(&secret),
        attested: attestation.is_ok(),
        attestation_reason: attestation.err().unwrap_or_default(),
        trust_anchor: anchor,
        ek_manufacturer: manufacturer,
        ek_model: model,
        ek_firmware: firmware,
        created_at_ms: now,
        expires_at_ms: now + CEREMONY_TTL_MS,
        finished_at_ms: None,
    };
    tpm_store::insert_enrollment(&app.store, &enrollment).await?;
    Ok(Begun { enrollment, token, credential_blob: made.id_object, encrypted_secret: made.encrypted_secret })
}

pub async fn finish(
    app: &App,
    enrollment_id: &str,
    token_secret: &str,
    activated_secret: &[u8],
    source_ip: &str,
) -> ApiResult<Credential> {
    let session = tpm_store::enrollment(&app.store, enrollment_id.trim())
        .await?
        .ok_or_else(|| ApiError::not_found("no such TPM enrollment; call BeginTpmEnrollment first"))?;
    let token = crate::domain::enrollment::usable_token(app, token_secret).await?;
    let now = crate::domain::enrollment::check_ceremony(
        &token,
        &session.token_id,
        session.finished_at_ms,
        session.expires_at_ms,
    )?;
    if !credential::secret_matches(&session.secret_hash, &sha256(activated_secret)) {
        return Err(ApiError::denied(
            "credential activation failed: the returned secret is not the one encrypted to this TPM's EK for this AK",
        ));
    }
    let tenant = tenants::get(&app.store, &session.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("enrollment {} names a missing tenant", session.id)))?;
    // The policy may have changed since the ceremony began.
    let tier = tiers::tpm_tier(session.attested);
    let verdict = tiers::verdict(&tenant.policy, tier);
    if verdict == Verdict::Deny {
        return Err(ApiError::precondition(format!(
            "enrollment rejected: the TPM is not attested ({}); {}",
            session.attestation_reason,
            tiers::refusal(tier)
        )));
    }
    let credential = Credential {
        id: session.credential_id.clone(),
        tenant_id: tenant.id.clone(),
        device_id: token.device_id.clone(),
        worker_external_id: token.worker_external_id.clone(),
        kind: KIND.into(),
        // A TPM credential has no COSE key: its AK lives in tpm_credentials.
        public_key_cose: Vec::new(),
        format: "tpm".into(),
        attestation_type: "attca".into(),
        attested: session.attested,
        tier,
        attestation_reason: session.attestation_reason.clone(),
        trust_anchor: session.trust_anchor.clone(),
        aaguid: String::new(),
        attestation_key_id: String::new(),
        sign_count: 0,
        enrolled_at_ms: now,
        enrolled_from_ip: source_ip.to_string(),
        revoked_at_ms: None,
        revoke_reason: None,
        last_presence_at_ms: None,
    };
    let extra = serde_json::json!({
        "ek_pin": session.ek_pin, "tpm_manufacturer": session.ek_manufacturer, "tpm_model": session.ek_model,
        "tpm_firmware": session.ek_firmware,
    });
    // The EK the TPM proved it holds (credential activation): one TPM enrolled by several
    // workers is one machine doing the work of several identities.
    let hardware = format!("tpm-ek:{}", session.ek_pin);
    let event = crate::domain::enrollment::risk_event(app, &credential, hardware, source_ip, now).await?;
    let position = app
        .store
        .retrying("tpm_enrollment.finish", || async {
            let mut tx = app.store.begin().await?;
            // The pin may have been set since the ceremony began: check it as this transaction sees it.
            if let Some(pinned) = tpm_store::device_ek_pin_tx(&mut tx, &tenant.id, &token.device_id).await?
                && !credential::secret_matches(pinned.as_bytes(), session.ek_pin.as_bytes())
            {
                return Err(pin_refusal(&pinned, &session.ek_pin));
            }
            if !crate::store::enrollment::consume_token(&mut tx, &token.id, now).await? {
                return Err(ApiError::precondition("the enrollment token was already used; tokens are single-use"));
            }
            if !tpm_store::finish_enrollment(&mut tx, &session.id, now).await? {
                return Err(ApiError::precondition("this enrollment was already finished"));
            }
            if let Err(e) = credentials::insert(&mut tx, &credential).await {
                return Err(if e.is_unique_violation() {
                    ApiError::AlreadyExists("this attestation key is already enrolled".into())
                } else {
                    e.into()
                });
            }
            tpm_store::insert_credential(
                &mut tx,
                &TpmCredential {
                    credential_id: credential.id.clone(),
                    tenant_id: tenant.id.clone(),
                    ak_public: session.ak_public.clone(),
                    ek_pin: session.ek_pin.clone(),
                    ek_manufacturer: session.ek_manufacturer.clone(),
                    ek_model: session.ek_model.clone(),
                    ek_firmware: session.ek_firmware.clone(),
                    last: None,
                },
            )
            .await?;
            crate::domain::enrollment::record(&mut tx, &token.id, &credential, verdict, source_ip, now, &extra).await?;
            let position = crate::domain::enrollment::append_risk_event(&mut tx, &event).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(position)
        })
        .await?;
    crate::domain::enrollment::enrolled(app, &credential, event, position).await?;
    Ok(credential)
}

/// Used by inventory: the device must exist in the tenant before it can be pinned.
pub async fn pin_device(tx: &mut crate::store::Tx, tenant_id: &str, device_id: &str, pin: &str) -> ApiResult<()> {
    if !tpm_store::set_device_ek_pin(tx, tenant_id, device_id, pin).await? {
        return Err(ApiError::not_found("no such device"));
    }
    Ok(())
}
