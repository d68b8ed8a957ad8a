//! Enrollment: a one-time token opens a WebAuthn registration ceremony; the
//! attestation is verified against the tenant's trust store and policy, and
//! the credential is bound to the worker and device in one transaction.

pub mod mds;
pub mod mds_catalog;
pub mod mds_flags;
pub mod mds_import;
pub mod tpm;

use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::limits::Kind;
use crate::domain::risk_live::PendingEvent;
use crate::domain::tiers::{self, Verdict};
use crate::store::credentials::Credential;
use crate::store::enrollment::{EnrollmentSession, EnrollmentToken};
use crate::store::flags::FlagRecord;
use crate::store::risk_events::Position;
use crate::store::tenants::Tenant;
use crate::store::{StoreError, Tx, credentials, enrollment, flags, inventory, tenants, trust};
use crate::util::{b64url, new_id, now_ms, random_bytes, sha256};
use tether_attestation::json::{
    AuthenticatorSelection, CreationOptionsJson, CredentialDescriptor, PubKeyCredParam, RegistrationResponseJson,
    RpEntity, UserEntity,
};
use tether_attestation::registration::{AttestationTrust, RegistrationExpectation, verify_registration};
use tether_attestation::trust::TrustStore;

/// A registration ceremony must finish within this time.
const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;

/// COSE algorithms offered to authenticators: ES256, EdDSA, ES384, RS256.
const ALGORITHMS: [i64; 4] = [-7, -8, -35, -257];

pub struct Begun {
    pub session: EnrollmentSession,
    pub token: EnrollmentToken,
    pub tenant: Tenant,
    pub creation_options_json: String,
}

/// Token secrets read `et.<base64url>`; the database keeps only their hash.
pub fn mint_token_secret() -> (String, Vec<u8>) {
    let secret = format!("et.{}", b64url(&random_bytes::<32>()));
    let hash = sha256(secret.as_bytes());
    (secret, hash)
}

/// Finds a token by secret and checks that it can still be redeemed.
pub(crate) async fn usable_token(app: &App, secret: &str) -> ApiResult<EnrollmentToken> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(ApiError::invalid("token is required"));
    }
    let token = enrollment::token_by_hash(&app.store, &sha256(secret.as_bytes()))
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("the enrollment token is not valid".into()))?;
    crate::telemetry::set_tenant(&token.tenant_id);
    let now = now_ms();
    if token.revoked_at_ms.is_some() {
        return Err(ApiError::precondition("the enrollment token was revoked; ask your administrator for a new one"));
    }
    if token.used_at_ms.is_some() {
        return Err(ApiError::precondition("the enrollment token was already used; tokens are single-use"));
    }
    if token.expires_at_ms <= now {
        return Err(ApiError::precondition("the enrollment token has expired; ask your administrator for a new one"));
    }
    let device = inventory::get_device(&app.store, &token.tenant_id, &token.device_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("token {} names a missing device", token.id)))?;
    if device.revoked_at_ms.is_some() {
        return Err(ApiError::precondition("the device this token was issued for has been revoked"));
    }
    if device.worker_external_id.as_deref() != Some(token.worker_external_id.as_str()) {
        return Err(ApiError::precondition(
            "the device was reassigned to another worker after this token was issued; ask for a new token",
        ));
    }
    Ok(token)
}

/// Enrollment is limited per source address and per token (by its hash, so
/// the secret is not kept in memory), whichever surface the call came through.
pub fn limit(app: &App, source_ip: &str, token: &str) -> ApiResult<()> {
    app.limits.check(Kind::EnrollmentPerAddress, source_ip)?;
    app.limits.check(Kind::EnrollmentPerToken, &b64url(&sha256(token.trim().as_bytes())))
}

/// The refusal of a token or ceremony used on another tenant's site.
fn other_tenant() -> ApiError {
    ApiError::denied(
        "this enrollment token belongs to another organization's enrollment site; \
         open the enrollment link your administrator sent you",
    )
}

/// Opens a registration ceremony. With `site_tenant` (the web app: the tenant
/// whose origin served the page) a token of any other tenant is refused
/// before anything is written.
pub async fn begin(app: &App, token_secret: &str, site_tenant: Option<&str>) -> ApiResult<Begun> {
    let token = usable_token(app, token_secret).await?;
    if site_tenant.is_some_and(|t| t != token.tenant_id) {
        return Err(other_tenant());
    }
    let tenant = tenants::get(&app.store, &token.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("token {} names a missing tenant", token.id)))?;
    let worker = inventory::get_worker(&app.store, &tenant.id, &token.worker_external_id).await?;
    let display_name = worker.map(|w| w.display_name).unwrap_or_else(|| token.worker_external_id.clone());
    let existing = credentials::list_for_device(&app.store, &tenant.id, &token.device_id).await?;
    let now = now_ms();
    let session = EnrollmentSession {
        id: new_id("enr"),
        tenant_id: tenant.id.clone(),
        token_id: token.id.clone(),
        challenge: random_bytes::<32>().to_vec(),
        created_at_ms: now,
        expires_at_ms: now + CEREMONY_TTL_MS,
        finished_at_ms: None,
    };
    let options = CreationOptionsJson {
        rp: RpEntity { id: tenant.policy.rp_id.clone(), name: tenant.name.clone() },
        user: UserEntity {
            // An opaque handle: the worker id itself never reaches the authenticator.
            id: b64url(&sha256(format!("{}\n{}", tenant.id, token.worker_external_id).as_bytes())[..16]),
            name: token.worker_external_id.clone(),
            display_name,
        },
        challenge: b64url(&session.challenge),
        pub_key_cred_params: ALGORITHMS
            .iter()
            .map(|alg| PubKeyCredParam { type_: "public-key".into(), alg: *alg })
            .collect(),
        timeout: Some(u64::try_from(CEREMONY_TTL_MS).unwrap_or(300_000)),
        attestation: "direct".into(),
        authenticator_selection: Some(AuthenticatorSelection {
            user_verification: Some("required".into()),
            resident_key: Some("discouraged".into()),
            require_resident_key: Some(false),
        }),
        exclude_credentials: existing
            .iter()
            .filter(|c| c.revoked_at_ms.is_none())
            .map(|c| CredentialDescriptor { type_: "public-key".into(), id: c.id.clone() })
            .collect(),
    };
    enrollment::insert_session(&app.store, &session).await?;
    Ok(Begun { session, token, tenant, creation_options_json: options.to_json() })
}

pub async fn tenant_trust_store(app: &App, tenant_id: &str) -> ApiResult<TrustStore> {
    let mut store = TrustStore::new();
    for anchor in trust::list(&app.store, tenant_id).await? {
        store
            .add_der(&anchor.der)
            .map_err(|e| StoreError::Corrupt(format!("trust anchor {} no longer parses: {e}", anchor.id)))?;
    }
    Ok(store)
}

/// The names FIDO metadata may list this credential's model under: its AAGUID (FIDO2; U2F
/// authenticators have none) and its attestation certificate's key identifier (U2F batch keys).
fn metadata_models(verified: &tether_attestation::registration::VerifiedRegistration) -> Vec<mds::Model> {
    let aaguid = (!verified.aaguid.is_nil()).then_some(mds::Model::Aaguid(verified.aaguid));
    let key_id = verified.attestation_key_id.clone().map(mds::Model::KeyId);
    aaguid.into_iter().chain(key_id).collect()
}

pub async fn finish(
    app: &App,
    enrollment_id: &str,
    token_secret: &str,
    registration_json: &str,
    source_ip: &str,
    site_tenant: Option<&str>,
) -> ApiResult<Credential> {
    let session = enrollment::session(&app.store, enrollment_id.trim())
        .await?
        .ok_or_else(|| ApiError::not_found("no such enrollment; call BeginEnrollment first"))?;
    if site_tenant.is_some_and(|t| t != session.tenant_id) {
        return Err(other_tenant());
    }
    let token = usable_token(app, token_secret).await?;
    let now = check_ceremony(&token, &session.token_id, session.finished_at_ms, session.expires_at_ms)?;
    let response = RegistrationResponseJson::from_json(registration_json)
        .map_err(|e| ApiError::invalid(format!("registration_response_json: {e}")))?;
    let tenant = tenants::get(&app.store, &session.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("enrollment {} names a missing tenant", session.id)))?;
    let trust_store = tenant_trust_store(app, &tenant.id).await?;
    let expectation = RegistrationExpectation {
        rp_id: &tenant.policy.rp_id,
        origin: &tenant.policy.origin,
        challenge: &session.challenge,
    };
    let now_utc = time::OffsetDateTime::now_utc();
    let mut verified = crate::telemetry::verify(crate::telemetry::WEBAUTHN_ATTESTATION, || {
        verify_registration(&response, &expectation, &trust_store, now_utc)
    })
    .map_err(|e| ApiError::invalid(format!("the registration was rejected: {e}")))?;
    // A chain the tenant's anchors do not reach may still end at a root the FIDO metadata
    // (the operator's or this tenant's) lists for this very model; such a root admits no other
    // model. Self and none attestation are not `Untrusted` and never get here.
    let metadata =
        mds_catalog::MdsView { operator: app.mds.current(), tenant: app.tenant_mds.get(&app.store, &tenant.id).await? };
    let models = metadata_models(&verified);
    if matches!(verified.trust, AttestationTrust::Untrusted { .. })
        && let Some(model) = models.first()
    {
        let model_roots = metadata.roots_for(model);
        if !model_roots.is_empty()
            && let Ok(by_model) = verify_registration(&response, &expectation, &model_roots, now_utc)
            && by_model.trust.is_trusted()
            && by_model.aaguid == verified.aaguid
            && by_model.attestation_key_id == verified.attestation_key_id
        {
            verified = by_model;
        }
    }
    let algorithm = verified.public_key.algorithm();
    if !ALGORITHMS.contains(&algorithm) {
        return Err(ApiError::invalid(format!(
            "the registration was rejected: the credential uses COSE algorithm {algorithm}, \
             which was not offered (offered: {ALGORITHMS:?})"
        )));
    }
    if let Some((model, listing, source)) = metadata.compromised(&models) {
        return Err(ApiError::precondition(format!(
            "enrollment rejected: the FIDO metadata{} marks this authenticator model ({model}{}) as {}{}; \
             enroll a different model",
            if source == mds_catalog::Source::Tenant { " this tenant imported" } else { "" },
            listing.description.map(|d| format!(", {d}")).unwrap_or_default(),
            listing.status,
            listing.effective_date.map(|d| format!(" since {d}")).unwrap_or_default(),
        )));
    }
    if !verified.user_verified {
        return Err(ApiError::invalid(
            "the registration was rejected: the authenticator did not verify the user (UV flag clear)",
        ));
    }
    let allowed = parse_aaguids(&tenant.policy.allowed_aaguids)?;
    // An AAGUID from self or none attestation is whatever the client wrote: is_attested never
    // lets it pass the allow-list, so such a credential is self_or_none whatever its AAGUID.
    let attestation = verified.is_attested(&allowed);
    let tier = tiers::webauthn_tier(attestation.is_ok());
    let verdict = tiers::verdict(&tenant.policy, tier);
    if let Err(reason) = &attestation
        && verdict == Verdict::Deny
    {
        return Err(ApiError::precondition(format!(
            "enrollment rejected: the credential is not hardware-attested ({reason}); {}",
            tiers::refusal(tier)
        )));
    }
    let credential = Credential {
        id: b64url(&verified.credential_id),
        tenant_id: tenant.id.clone(),
        device_id: token.device_id.clone(),
        worker_external_id: token.worker_external_id.clone(),
        kind: "webauthn".into(),
        public_key_cose: verified.public_key.to_cose(),
        format: verified.format.as_str().into(),
        attestation_type: verified.attestation_type.as_str().into(),
        attested: attestation.is_ok(),
        tier,
        attestation_reason: attestation.as_ref().err().cloned().unwrap_or_default(),
        trust_anchor: match &verified.trust {
            AttestationTrust::Trusted { anchor_subject } => anchor_subject.clone(),
            _ => String::new(),
        },
        aaguid: verified.aaguid.to_string(),
        attestation_key_id: verified.attestation_key_id.clone().unwrap_or_default(),
        sign_count: i64::from(verified.sign_count),
        enrolled_at_ms: now,
        enrolled_from_ip: source_ip.to_string(),
        revoked_at_ms: None,
        revoke_reason: None,
        last_presence_at_ms: None,
    };
    let extra = serde_json::json!({"aaguid": credential.aaguid});
    // The credential key: unique per registration, so two identities holding it share one
    // authenticator (or a copied key); the attestation says whether the hardware proved it.
    let hardware = format!("webauthn-key:{}", hex::encode(crate::util::sha256(&credential.public_key_cose)));
    let event = risk_event(app, &credential, hardware, source_ip, now).await?;
    let position = app
        .store
        .retrying("enrollment.finish", || async {
            let mut tx = app.store.begin().await?;
            if !enrollment::consume_token(&mut tx, &token.id, now).await? {
                return Err(ApiError::precondition("the enrollment token was already used; tokens are single-use"));
            }
            if !enrollment::finish_session(&mut tx, &session.id, now).await? {
                return Err(ApiError::precondition("this enrollment was already finished"));
            }
            if let Err(e) = credentials::insert(&mut tx, &credential).await {
                return Err(if e.is_unique_violation() {
                    ApiError::AlreadyExists("this credential is already enrolled".into())
                } else {
                    e.into()
                });
            }
            record(&mut tx, &token.id, &credential, verdict, source_ip, now, &extra).await?;
            let position = append_risk_event(&mut tx, &event).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(position)
        })
        .await?;
    enrolled(app, &credential, event, position).await?;
    Ok(credential)
}

/// The checks every enrollment's finishing step makes on its ceremony:
/// the token opened it, and it is neither finished nor expired. Returns now.
pub(crate) fn check_ceremony(
    token: &EnrollmentToken,
    ceremony_token_id: &str,
    finished_at_ms: Option<i64>,
    expires_at_ms: i64,
) -> ApiResult<i64> {
    if token.id != ceremony_token_id {
        return Err(ApiError::denied("the token does not belong to this enrollment"));
    }
    let now = now_ms();
    if finished_at_ms.is_some() {
        return Err(ApiError::precondition("this enrollment was already finished"));
    }
    if expires_at_ms <= now {
        return Err(ApiError::precondition("this enrollment ceremony expired; begin again"));
    }
    Ok(now)
}

/// The bookkeeping every enrollment's transaction ends with, whatever the
/// key: a review `unattested_hardware` flag when the tier's policy is
/// allow-and-flag, and the `device.enrolled` audit entry (with the tier and,
/// in monitor mode, the refusal it did not enforce). `extra` adds
/// key-specific evidence. The caller commits, then calls [`enrolled`].
pub(crate) async fn record(
    tx: &mut Tx,
    token_id: &str,
    credential: &Credential,
    verdict: Verdict,
    source_ip: &str,
    now: i64,
    extra: &serde_json::Value,
) -> Result<(), StoreError> {
    let with_extra = |mut base: serde_json::Value| {
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        base
    };
    if verdict == Verdict::AllowAndFlag {
        let evidence = with_extra(serde_json::json!({
            "tier": credential.tier.as_str(),
            "format": credential.format,
            "attestation_type": credential.attestation_type,
            "reason": credential.attestation_reason,
            "source_ip": source_ip,
        }));
        let flag = FlagRecord {
            id: new_id("flg"),
            tenant_id: credential.tenant_id.clone(),
            kind: "unattested_hardware".into(),
            severity: "review".into(),
            status: "open".into(),
            device_id: credential.device_id.clone(),
            worker_external_id: credential.worker_external_id.clone(),
            credential_id: credential.id.clone(),
            session_id: String::new(),
            raised_at_ms: now,
            evidence_json: evidence.to_string(),
        };
        flags::insert(tx, &flag).await?;
        crate::domain::siem::flag_raised(tx, &flag).await?;
    }
    let mut details = with_extra(serde_json::json!({
        "device": credential.device_id, "worker": credential.worker_external_id, "credential": credential.id,
        "format": credential.format, "attested": credential.attested, "trust_anchor": credential.trust_anchor,
        "tier": credential.tier.as_str(), "source_ip": source_ip,
    }));
    if verdict == Verdict::WouldDeny
        && let Some(details) = details.as_object_mut()
    {
        let reason = format!("{} ({})", tiers::refusal(credential.tier), credential.attestation_reason);
        details.insert("would_deny".into(), serde_json::Value::String(reason));
    }
    let actor = audit::Actor(format!("token:{token_id}"));
    audit::append(tx, &credential.tenant_id, &actor, "device.enrolled", &credential.device_id, details).await
}

/// The risk engine's view of an enrollment, prepared before its transaction
/// (the worker's declaration is read outside it) and appended inside it
/// ([`append_risk_event`]), so the enrollment and its event commit together.
pub(crate) async fn risk_event(
    app: &App,
    credential: &Credential,
    hardware: String,
    source_ip: &str,
    now: i64,
) -> ApiResult<Option<PendingEvent>> {
    let observation = crate::domain::risk_live::Observation {
        tenant_id: &credential.tenant_id,
        worker: &credential.worker_external_id,
        device_id: &credential.device_id,
        credential_id: &credential.id,
        session_id: "",
        ip: source_ip,
        at_ms: now,
        what: crate::domain::risk_live::Happening::Enrolled {
            attested: credential.attested,
            format: credential.format.clone(),
            hardware,
        },
    };
    crate::domain::risk_live::prepare(app, observation).await
}

/// Appends the enrollment's risk event, if it has one, in its transaction.
pub(crate) async fn append_risk_event(
    tx: &mut Tx,
    event: &Option<PendingEvent>,
) -> Result<Option<Position>, StoreError> {
    match event {
        Some(event) => Ok(Some(event.append(tx).await?)),
        None => Ok(None),
    }
}

/// After an enrollment committed: the log line, and the evaluation of its
/// risk event (appended at `position`).
pub(crate) async fn enrolled(
    app: &App,
    credential: &Credential,
    event: Option<PendingEvent>,
    position: Option<Position>,
) -> ApiResult<()> {
    tracing::info!(
        tenant = %credential.tenant_id, device = %credential.device_id, credential = %credential.id,
        format = %credential.format, attested = credential.attested, "device enrolled"
    );
    if let (Some(event), Some(position)) = (event, position) {
        event.evaluate(app, position).await?;
    }
    Ok(())
}

/// Policy AAGUIDs are validated when stored; one that no longer parses is an
/// error rather than being skipped, since a shorter list could become empty
/// and so allow every model.
pub fn parse_aaguids(list: &[String]) -> ApiResult<Vec<uuid::Uuid>> {
    list.iter()
        .map(|s| {
            uuid::Uuid::parse_str(s)
                .map_err(|_| ApiError::Store(StoreError::Corrupt(format!("stored AAGUID {s:?} does not parse"))))
        })
        .collect()
}
