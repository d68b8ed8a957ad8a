//! Short-lived access tokens (format and verification in
//! `tether_attestation::access_token`): the signing keys, issuance after a
//! verified presence answer, and the token path of online access checks.
//!
//! Keys come from PKCS#8 files named on the command line or in the
//! environment, never from the database: a database dump must not let anyone
//! mint tokens. One key signs; previous keys only verify, so a rotation keeps
//! tokens issued under the old key valid until they expire.

use crate::domain::access::token_keys::TokenKeys;
use crate::domain::access::{AccessDecision, AccessQuery, check_with};
use crate::domain::app::App;
use crate::domain::audit::{self, Actor};
use crate::domain::error::{ApiError, ApiResult};
use crate::store::{StoreError, credentials, presence as presence_store};
use crate::util::{new_id, now_ms};
use tether_attestation::access_token::{AccessTokenClaims, AccessTokenError, verify};
use tether_proto::v1::{self as pb, DenyReason};

/// The gateway id recorded with the access decision taken at issuance.
pub const ISSUANCE_GATEWAY: &str = "tether-access-token";

const NOT_ENABLED: &str = "access tokens are not enabled on this server: start tetherd with \
    --access-token-key FILE (or TETHER_ACCESS_TOKEN_KEY=FILE), a PKCS#8 Ed25519 or P-256 private key such as \
    `tether gateway new-token-key --out FILE` writes";

/// The configured keys, or FAILED_PRECONDITION saying how to enable tokens.
pub fn keys(app: &App) -> ApiResult<&TokenKeys> {
    app.access_tokens.get().ok_or_else(|| ApiError::precondition(NOT_ENABLED))
}

/// Issues a token after the answer to `challenge_id` was verified, for the
/// address the answer came from, when the device would be allowed access now
/// (that decision is recorded as a session). Every issuance is audited.
pub async fn issue_after_answer(app: &App, challenge_id: &str, source_ip: &str) -> ApiResult<(String, i64)> {
    let keys = keys(app)?;
    let challenge = presence_store::challenge(&app.store, challenge_id.trim())
        .await?
        .ok_or_else(|| ApiError::not_found("no such challenge"))?;
    let credential = credentials::get(&app.store, &challenge.credential_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("challenge {} names a missing credential", challenge.id)))?;
    let query = AccessQuery {
        tenant_id: &credential.tenant_id,
        worker_external_id: &credential.worker_external_id,
        device_id: &credential.device_id,
        credential_id: &credential.id,
        source_ip,
        gateway_id: ISSUANCE_GATEWAY,
    };
    let decision = check_with(app, &query, Vec::new()).await?;
    if !decision.allow {
        let reasons: Vec<&str> = decision.reasons.iter().map(|(_, detail)| detail.as_str()).collect();
        return Err(ApiError::precondition(format!(
            "the presence answer was recorded, but no access token was issued: {}",
            reasons.join("; ")
        )));
    }
    // JWT times are whole seconds; rounding down keeps the lifetime at most the TTL.
    let now = now_ms() / 1000 * 1000;
    let claims = AccessTokenClaims {
        issuer: keys.issuer.clone(),
        tenant_id: credential.tenant_id.clone(),
        worker_external_id: credential.worker_external_id.clone(),
        device_id: credential.device_id.clone(),
        credential_id: credential.id.clone(),
        source_ip: source_ip.to_string(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(keys.ttl_ms),
        token_id: new_id("att"),
        key_id: String::new(),
    };
    let token = keys.signer.sign(&claims).map_err(|e| ApiError::precondition(format!("cannot issue a token: {e}")))?;
    // One audit entry per token: issuance follows a presence answer, which
    // already writes a row, so this at most doubles that write load.
    let details = serde_json::json!({
        "key_id": keys.signer.key_id(),
        "token_id": claims.token_id,
        "worker": claims.worker_external_id,
        "credential": claims.credential_id,
        "source_ip": decision_ip(&claims),
        "expires_at_ms": claims.expires_at_ms,
        "session_id": decision.session_id,
        // Monitor mode issues the token; the audit entry says which tier denial it did not enforce.
        "would_deny": decision.would_deny.iter().map(|(code, _)| super::reason_name(*code)).collect::<Vec<_>>(),
    });
    let mut tx = app.store.begin().await?;
    let actor = Actor(format!("credential:{}", claims.credential_id));
    audit::append(&mut tx, &claims.tenant_id, &actor, "access_token.issued", &claims.device_id, details).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((token, claims.expires_at_ms))
}

fn decision_ip(claims: &AccessTokenClaims) -> String {
    tether_attestation::access_token::canonical_ip(&claims.source_ip).map(|ip| ip.to_string()).unwrap_or_default()
}

/// Why a presented token does not let the request through.
pub fn deny_reason(error: &AccessTokenError) -> DenyReason {
    match error {
        AccessTokenError::Expired { .. } => DenyReason::AccessTokenExpired,
        AccessTokenError::WrongSourceIp { .. } => DenyReason::AccessTokenWrongSource,
        AccessTokenError::InvalidSourceIp(_) => DenyReason::InvalidRequest,
        AccessTokenError::WrongTenant { .. } => DenyReason::AccessTokenMismatch,
        _ => DenyReason::AccessTokenInvalid,
    }
}

/// Verifies `token` for `tenant_id`, presented from `source_ip`, and checks
/// that the fields the caller named (may be empty) agree with it.
pub fn verify_for(
    app: &App,
    tenant_id: &str,
    token: &str,
    source_ip: &str,
    named: [&str; 3],
) -> ApiResult<Result<AccessTokenClaims, (DenyReason, String)>> {
    let keys = match keys(app)?.key_set_for(tenant_id) {
        Ok(keys) => keys,
        Err(e) => return Ok(Err((DenyReason::AccessTokenInvalid, format!("access token: {e}")))),
    };
    let claims = match verify(token.trim(), &keys, now_ms(), Some(source_ip)) {
        Ok(claims) => claims,
        // The other tenant's id stays out of this tenant's session records.
        Err(AccessTokenError::WrongTenant { .. }) => {
            return Ok(Err((DenyReason::AccessTokenMismatch, "the access token was issued in another tenant".into())));
        }
        Err(e) => return Ok(Err((deny_reason(&e), format!("access token: {e}")))),
    };
    let [worker, device, credential] = named.map(str::trim);
    for (what, given, claimed) in [
        ("worker", worker, &claims.worker_external_id),
        ("device", device, &claims.device_id),
        ("credential", credential, &claims.credential_id),
    ] {
        if !given.is_empty() && given != claimed {
            return Ok(Err((
                DenyReason::AccessTokenMismatch,
                format!("the access token was issued for {what} {claimed:?}, not {given:?}"),
            )));
        }
    }
    Ok(Ok(claims))
}

/// CheckAccess with a token: a valid token supplies the worker, device and
/// credential, then the normal decision runs; an invalid one denies (and
/// the session is recorded either way).
pub async fn check_with_token(app: &App, tenant_id: &str, r: &pb::CheckAccessRequest) -> ApiResult<AccessDecision> {
    let named = [r.worker_external_id.as_str(), r.device_id.as_str(), r.credential_id.as_str()];
    match verify_for(app, tenant_id, &r.access_token, &r.source_ip, named)? {
        Ok(claims) => {
            let query = AccessQuery {
                tenant_id,
                worker_external_id: &claims.worker_external_id,
                device_id: &claims.device_id,
                credential_id: &claims.credential_id,
                source_ip: &r.source_ip,
                gateway_id: &r.gateway_id,
            };
            check_with(app, &query, Vec::new()).await
        }
        Err(refused) => {
            let query = AccessQuery {
                tenant_id,
                worker_external_id: &r.worker_external_id,
                device_id: &r.device_id,
                credential_id: &r.credential_id,
                source_ip: &r.source_ip,
                gateway_id: &r.gateway_id,
            };
            check_with(app, &query, vec![refused]).await
        }
    }
}
