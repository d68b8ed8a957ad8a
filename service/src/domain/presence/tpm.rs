//! Presence answers from TPM devices: a TPM2_Quote over the challenge nonce by the AK bound at
//! credential activation. The quote is verified with the stored AK only — never with a key that
//! comes with the answer (CVE-2022-1053) — and a bad signature is a recorded rejection, never
//! logged and accepted (Keylime PR #1423). The challenge is consumed atomically exactly like a
//! WebAuthn answer, and the quote's clock reading is compared with the previous one: counters
//! going backwards raise a high-severity `tpm_anomaly` flag (which denies access), a firmware
//! change a review one.
//!
//! When a PCR policy applies to the device (its own, else its model's), the quote must select the
//! policy's PCRs and carry their values; values other than the expected ones still prove the
//! TPM's presence, so the answer counts and a review `pcr_policy_mismatch` flag records them.

use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::enrollment::tpm::KIND;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::limits::Kind;
use crate::domain::presence::posture::Report;
use crate::domain::presence::{Attempt, unverified};
use crate::domain::risk_live::{self, Happening, Observation};
use crate::store::flags::FlagRecord;
use crate::store::pcr_policy::{self, PcrPolicy};
use crate::store::risk_events::Position;
use crate::store::tpm::Clock;
use crate::store::{StoreError, Tx, credentials, flags, inventory, presence, tpm as tpm_store};
use crate::util::new_id;
use tether_attestation::tpm::quote::{self, ClockAnomaly};
use tether_attestation::tpm::{Attest, ClockInfo, HashAlg, PcrSelection, TpmPublic, pcr::PcrValues};
use tether_proto::v1 as pb;

/// Larger quote parts are refused before parsing.
const MAX_PART: usize = 16 * 1024;

/// Verifies and records a quote answering `challenge_id`; with a posture report the quote's
/// qualifying data must be the challenge bound to it. As for WebAuthn answers, only a quote
/// signed by the bound AK counts against the device's budget or is recorded. Returns the
/// verification time.
pub async fn answer(
    app: &App,
    challenge_id: &str,
    quote: &pb::TpmQuote,
    source_ip: &str,
    posture: Option<&Report>,
) -> ApiResult<i64> {
    let (challenge, credential) = super::answered(app, challenge_id, source_ip).await?;
    let attempt = Attempt { challenge: &challenge, credential: &credential, source_ip };

    if credential.kind != KIND {
        let error = ApiError::invalid(
            "this credential is a WebAuthn credential: answer with assertion_response_json, not tpm_quote",
        );
        return Err(unverified(app, source_ip, error));
    }
    if quote.attest.is_empty() || quote.signature.is_empty() {
        let error = ApiError::invalid("tpm_quote: attest (TPMS_ATTEST) and signature (TPMT_SIGNATURE) are required");
        return Err(unverified(app, source_ip, error));
    }
    if quote.attest.len() > MAX_PART || quote.signature.len() > MAX_PART || quote.pcrs.len() > MAX_PART {
        return Err(unverified(app, source_ip, ApiError::invalid("tpm_quote: a part is too large")));
    }
    let stored = tpm_store::credential(&app.store, &credential.id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("TPM credential {} has no stored AK", credential.id)))?;
    let ak = TpmPublic::parse(&stored.ak_public)
        .map_err(|e| StoreError::Corrupt(format!("credential {} AK: {e}", credential.id)))?;
    // Only the bound AK's signature makes this the device's answer (see presence::unverified).
    if let Err(e) = quote::verify_signature(&ak, &quote.attest, &quote.signature) {
        let error = ApiError::denied(format!("the presence answer was rejected: {e}"));
        return Err(unverified(app, source_ip, error));
    }
    app.limits.check(Kind::PresencePerDevice, &challenge.device_id)?;

    let now = attempt.check_open(app).await?;
    // A quote made for an earlier challenge's nonce is a replay, like a WebAuthn assertion's.
    if let Ok(attest) = Attest::parse(&quote.attest) {
        attempt.refuse_earlier_nonce(app, &attest.extra_data, "quote").await?;
        attempt.refuse_tampered_posture(app, &attest.extra_data, posture).await?;
    }
    let qualifying_data = crate::domain::presence::posture::expected(&challenge.nonce, posture);
    let pcrs = if quote.pcrs.is_empty() {
        None
    } else {
        match PcrValues::from_tpm2_tools(&quote.pcrs) {
            Ok(p) => Some(p),
            Err(e) => {
                let error = ApiError::invalid(format!("tpm_quote.pcrs: {e}"));
                return Err(attempt.reject(app, "failed", error).await);
            }
        }
    };
    let verify = || quote::verify_quote(&ak, &quote.attest, &quote.signature, &qualifying_data, pcrs.as_ref());
    let verified = match crate::telemetry::verify(crate::telemetry::TPM_QUOTE, verify) {
        Ok(v) => v,
        Err(e) => {
            let error = ApiError::denied(format!("the presence answer was rejected: {e}"));
            return Err(attempt.reject(app, "failed", error).await);
        }
    };
    let model = inventory::get_device(&app.store, &challenge.tenant_id, &challenge.device_id)
        .await?
        .map(|d| d.model)
        .unwrap_or_default();
    let policy = pcr_policy::applicable(&app.store, &challenge.tenant_id, &challenge.device_id, &model).await?;
    let mismatches = match &policy {
        Some(policy) => match evaluate(policy, &verified.selection, pcrs.as_ref()) {
            Ok(m) => m,
            Err(error) => return Err(attempt.reject(app, "failed", error).await),
        },
        None => Vec::new(),
    };
    let current = Clock {
        clock: verified.clock_info.clock,
        reset_count: verified.clock_info.reset_count,
        restart_count: verified.clock_info.restart_count,
        firmware_version: verified.firmware_version,
    };
    let anomalies = match stored.last {
        Some(previous) => {
            let info = |c: &Clock| ClockInfo {
                clock: c.clock,
                reset_count: c.reset_count,
                restart_count: c.restart_count,
                safe: true,
            };
            quote::compare_clocks(
                &info(&previous),
                previous.firmware_version,
                &info(&current),
                current.firmware_version,
            )
        }
        None => Vec::new(),
    };
    let high: Vec<&ClockAnomaly> =
        anomalies.iter().filter(|a| !matches!(a, ClockAnomaly::FirmwareChanged { .. })).collect();
    let firmware_changed = anomalies.iter().any(|a| matches!(a, ClockAnomaly::FirmwareChanged { .. }));

    // The risk engine sees the answer like a WebAuthn one (a TPM keeps no signature counter).
    let observation = Observation {
        tenant_id: &challenge.tenant_id,
        worker: &credential.worker_external_id,
        device_id: &challenge.device_id,
        credential_id: &credential.id,
        session_id: "",
        ip: source_ip,
        at_ms: now,
        what: Happening::Answered {
            issued_at_ms: challenge.issued_at_ms,
            sign_count: 0,
            posture: posture.map(|p| p.posture.clone()),
        },
    };
    let risk_event = risk_live::prepare(app, observation).await?;
    // The transaction is one unit: run again whole if the database aborts it for a concurrent one.
    let outcome = app
        .store
        .retrying("tpm_presence.answer", || async {
            let mut tx = app.store.begin().await?;
            if !presence::consume(&mut tx, &challenge.id, now).await? {
                return Ok(Quoted::Replayed);
            }
            if !tpm_store::record_clock(&mut tx, &credential.id, stored.last, current, now).await? {
                // Another answer for this credential recorded a reading since it was read above.
                return Ok(Quoted::ClockRaced);
            }
            let evidence = |anomalies: &[&ClockAnomaly]| {
                serde_json::json!({
                    "anomalies": anomalies.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "previous": stored.last.map(clock_json),
                    "current": clock_json(current),
                    "challenge_id": challenge.id,
                    "source_ip": source_ip,
                })
            };
            if !high.is_empty() {
                // A genuine quote by the bound AK whose counters went backwards: the TPM was cleared or
                // its state rolled back to erase history. Consume the challenge, record a failure, flag.
                let found: Vec<String> = high.iter().map(|a| a.to_string()).collect();
                let detail = format!("tpm_anomaly: {}", found.join("; "));
                let event = attempt.event("failed", detail.clone(), now);
                presence::insert_event(&mut tx, &event).await?;
                crate::domain::siem::presence_recorded(&mut tx, &event).await?;
                raise(&mut tx, &attempt, "tpm_anomaly", "high", evidence(&high), now).await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(Quoted::Anomaly(detail));
            }
            if !credentials::record_presence(&mut tx, &credential.id, 0, now).await? {
                return Ok(Quoted::Revoked);
            }
            if firmware_changed {
                let changed: Vec<&ClockAnomaly> = anomalies.iter().collect();
                raise(&mut tx, &attempt, "tpm_anomaly", "review", evidence(&changed), now).await?;
            }
            let mut detail = format!(
                "verified TPM quote; clock {} reset {} restart {} firmware {:016x}{}",
                current.clock,
                current.reset_count,
                current.restart_count,
                current.firmware_version,
                if verified.pcrs_verified { "; PCR digest matches" } else { "" }
            );
            if let Some(policy) = &policy {
                if mismatches.is_empty() {
                    detail.push_str(&format!("; PCR policy for {} matches", policy.scope));
                } else {
                    let pcrs = mismatches.iter().map(|m| m.pcr.as_str()).collect::<Vec<_>>().join(", ");
                    detail.push_str(&format!(
                        "; PCR policy for {} not met: {pcrs} differ from the expected values \
                         (flagged pcr_policy_mismatch)",
                        policy.scope
                    ));
                    let evidence = serde_json::json!({
                        "scope": policy.scope.kind(),
                        "target": policy.scope.target(),
                        "mismatches": mismatches.iter().map(Mismatch::json).collect::<Vec<_>>(),
                        "challenge_id": challenge.id,
                        "source_ip": source_ip,
                    });
                    raise(&mut tx, &attempt, "pcr_policy_mismatch", "review", evidence, now).await?;
                    let (credential, device) = (&credential.id, &challenge.device_id);
                    tracing::warn!(%credential, %device, %pcrs, "PCR policy mismatch");
                }
            }
            attempt.record_ok(&mut tx, detail, now, posture).await?;
            let position = match &risk_event {
                Some(event) => Some(event.append(&mut tx).await?),
                None => None,
            };
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(Quoted::Recorded(position))
        })
        .await?;
    match outcome {
        Quoted::Recorded(position) => {
            if let (Some(event), Some(position)) = (risk_event, position) {
                event.evaluate(app, position).await?;
            }
        }
        Quoted::Replayed => {
            let error = ApiError::precondition("this challenge was already answered; challenges are single-use");
            return Err(attempt.reject(app, "replayed", error).await);
        }
        Quoted::ClockRaced => {
            let error = ApiError::precondition(
                "another answer for this credential was recorded at the same time; answer the next challenge",
            );
            return Err(attempt.reject(app, "failed", error).await);
        }
        Quoted::Anomaly(detail) => {
            tracing::warn!(credential = %credential.id, device = %challenge.device_id, %detail, "TPM anomaly");
            return Err(ApiError::denied(format!("{detail}; the device has been flagged")));
        }
        Quoted::Revoked => {
            let error = ApiError::denied("the credential has been revoked");
            return Err(attempt.reject(app, "failed", error).await);
        }
    }
    Ok(now)
}

/// How an answer's transaction ended; the refusals are recorded after it rolled back.
enum Quoted {
    /// Recorded, with its risk event at this position (None when it has none).
    Recorded(Option<Position>),
    Replayed,
    ClockRaced,
    /// Committed with a high-severity flag: the answer is refused with this detail.
    Anomaly(String),
    Revoked,
}

fn clock_json(c: Clock) -> serde_json::Value {
    serde_json::json!({
        "clock": c.clock,
        "reset_count": c.reset_count,
        "restart_count": c.restart_count,
        "firmware_version": format!("{:016x}", c.firmware_version),
    })
}

/// One policy PCR whose quoted value is not the expected one.
struct Mismatch {
    pcr: String,
    bank: String,
    index: u32,
    expected: String,
    actual: String,
}

impl Mismatch {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pcr": self.pcr, "bank": self.bank, "index": self.index,
            "expected": self.expected, "actual": self.actual,
        })
    }
}

/// Checks a verified quote against the PCR policy that applies. A policy PCR the quote does
/// not select, or a quote without PCR values, is a rejection (the TPM could hide any state by
/// leaving PCRs out); values that differ are returned, for a flag.
fn evaluate(
    policy: &PcrPolicy,
    selection: &[PcrSelection],
    values: Option<&PcrValues>,
) -> Result<Vec<Mismatch>, ApiError> {
    let quoted = |alg: HashAlg, index: u32| {
        selection.iter().any(|bank| HashAlg::from_id(bank.hash) == Some(alg) && bank.pcrs().contains(&index))
    };
    let missing: Vec<String> = policy
        .pcrs
        .iter()
        .filter(|e| pcr_policy::bank(&e.bank).is_none_or(|alg| !quoted(alg, e.index)))
        .map(|e| e.pcr())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::precondition(format!(
            "the PCR policy for {} expects PCR {}, which the quote does not include; quote the policy's PCRs",
            policy.scope,
            missing.join(", ")
        )));
    }
    let Some(values) = values else {
        return Err(ApiError::precondition(format!(
            "the PCR policy for {} applies to this device: send the quoted PCR values with the quote \
             (tpm_quote.pcrs, the file tpm2_quote -o writes)",
            policy.scope
        )));
    };
    let mut mismatches = Vec::new();
    for e in &policy.pcrs {
        let actual = pcr_policy::bank(&e.bank).and_then(|alg| values.get(alg, e.index)).map(hex::encode);
        if actual.as_deref() != Some(e.value_hex.as_str()) {
            mismatches.push(Mismatch {
                pcr: e.pcr(),
                bank: e.bank.clone(),
                index: e.index,
                expected: e.value_hex.clone(),
                actual: actual.unwrap_or_default(),
            });
        }
    }
    Ok(mismatches)
}

/// A flag of `kind` and its audit entry, in the answer's transaction.
async fn raise(
    tx: &mut Tx,
    attempt: &Attempt<'_>,
    kind: &str,
    severity: &str,
    evidence: serde_json::Value,
    now: i64,
) -> Result<(), StoreError> {
    let flag = FlagRecord {
        id: new_id("flg"),
        tenant_id: attempt.challenge.tenant_id.clone(),
        kind: kind.into(),
        severity: severity.into(),
        status: "open".into(),
        device_id: attempt.challenge.device_id.clone(),
        worker_external_id: attempt.credential.worker_external_id.clone(),
        credential_id: attempt.credential.id.clone(),
        session_id: String::new(),
        raised_at_ms: now,
        evidence_json: evidence.to_string(),
    };
    flags::insert(tx, &flag).await?;
    crate::domain::siem::flag_raised(tx, &flag).await?;
    let details = serde_json::json!({"kind": kind, "severity": severity, "credential": attempt.credential.id});
    audit::append(
        tx,
        &attempt.challenge.tenant_id,
        &audit::Actor::system(),
        "flag.raised",
        &attempt.challenge.device_id,
        details,
    )
    .await?;
    Ok(())
}
