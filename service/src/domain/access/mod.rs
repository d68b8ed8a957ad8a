//! Gateway access decisions. Every path that is not a positive proof of an
//! attested, present, unflagged device ends in DENY, and every decision is
//! recorded as a session.

pub mod by_address;
pub mod envoy;
mod evaluate;
pub mod token;
pub mod token_keys;

use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::domain::flags::policy::severity_to_proto;
use crate::domain::risk_live;
use crate::store::append_queue;
use crate::store::sessions::SessionRecord;
use crate::util::{canonical_ip, new_id, now_ms};
use evaluate::{Target, evaluate};
use tether_proto::v1::{self as pb, DenyReason};
use tether_risk::Severity;

pub struct AccessQuery<'a> {
    pub tenant_id: &'a str,
    pub worker_external_id: &'a str,
    pub device_id: &'a str,
    pub credential_id: &'a str,
    pub source_ip: &'a str,
    pub gateway_id: &'a str,
}

pub struct AccessDecision {
    pub allow: bool,
    pub reasons: Vec<(DenyReason, String)>,
    /// Tier denials the tenant's monitor mode did not enforce.
    pub would_deny: Vec<(DenyReason, String)>,
    pub session_id: String,
    /// The worker as recorded with the session.
    pub worker_external_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub last_presence_at_ms: i64,
    /// Every open kind with its highest severity, and whether it denied.
    pub open_flags: Vec<OpenFlag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenFlag {
    pub kind: String,
    pub severity: Severity,
    pub denies: bool,
}

fn reasons_to_proto(reasons: &[(DenyReason, String)]) -> Vec<pb::Reason> {
    reasons.iter().map(|(code, detail)| pb::Reason { code: *code as i32, detail: detail.clone() }).collect()
}

/// Reasons as sessions store them: a JSON array of `{"code", "detail"}`.
fn reasons_to_json(reasons: &[(DenyReason, String)]) -> String {
    let reasons = reasons
        .iter()
        .map(|(code, detail)| serde_json::json!({"code": reason_name(*code), "detail": detail}))
        .collect();
    serde_json::Value::Array(reasons).to_string()
}

impl AccessDecision {
    pub fn to_proto(&self) -> pb::CheckAccessResponse {
        pb::CheckAccessResponse {
            decision: if self.allow { pb::Decision::Allow } else { pb::Decision::Deny } as i32,
            reasons: reasons_to_proto(&self.reasons),
            would_deny_reasons: reasons_to_proto(&self.would_deny),
            session_id: self.session_id.clone(),
            device_id: self.device_id.clone(),
            credential_id: self.credential_id.clone(),
            last_presence_at_ms: self.last_presence_at_ms,
            open_flags: self
                .open_flags
                .iter()
                .map(|f| pb::OpenFlag {
                    kind: f.kind.clone(),
                    severity: severity_to_proto(f.severity) as i32,
                    denies: f.denies,
                })
                .collect(),
        }
    }
}

/// The stable snake_case name of a reason, as stored and exported.
pub fn reason_name(code: DenyReason) -> &'static str {
    match code {
        DenyReason::Unspecified => "unspecified",
        DenyReason::InvalidRequest => "invalid_request",
        DenyReason::WorkerUnknown => "worker_unknown",
        DenyReason::DeviceNotEnrolled => "device_not_enrolled",
        DenyReason::DeviceNotAssignedToWorker => "device_not_assigned_to_worker",
        DenyReason::DeviceRevoked => "device_revoked",
        DenyReason::CredentialRevoked => "credential_revoked",
        DenyReason::Unattested => "unattested",
        DenyReason::PresenceNever => "presence_never",
        DenyReason::PresenceStale => "presence_stale",
        DenyReason::OpenHighSeverityFlags => "open_high_severity_flags",
        DenyReason::OpenFlags => "open_flags",
        DenyReason::AccessTokenInvalid => "access_token_invalid",
        DenyReason::AccessTokenExpired => "access_token_expired",
        DenyReason::AccessTokenWrongSource => "access_token_wrong_source",
        DenyReason::AccessTokenMismatch => "access_token_mismatch",
        DenyReason::IdentityMissing => "identity_missing",
        DenyReason::ClientCertificateInvalid => "client_certificate_invalid",
    }
}

pub fn reason_from_name(name: &str) -> DenyReason {
    DenyReason::from_str_name(&format!("DENY_REASON_{}", name.to_ascii_uppercase())).unwrap_or(DenyReason::Unspecified)
}

/// Evaluates the request, records the session, and returns the decision.
pub async fn check(app: &App, q: &AccessQuery<'_>) -> ApiResult<AccessDecision> {
    check_with(app, q, Vec::new()).await
}

/// As [`check`], but a non-empty `refused` (reasons found before the query
/// could be trusted, such as an invalid access token) decides DENY without
/// evaluating the query; the session is still recorded.
pub async fn check_with(
    app: &App,
    q: &AccessQuery<'_>,
    refused: Vec<(DenyReason, String)>,
) -> ApiResult<AccessDecision> {
    let now = now_ms();
    let preset = !refused.is_empty();
    let mut reasons: Vec<(DenyReason, String)> = refused;
    let mut target = Target::new(q.device_id);
    let source_ip = canonical_ip(q.source_ip).map(|ip| ip.to_string());
    let mut last_presence = 0;

    let session_id = new_id("ses");
    if preset {
        // Decided already: nothing in the query is evaluated or observed.
    } else if let Some(problem) = malformed(q, source_ip.is_some()) {
        reasons.push((DenyReason::InvalidRequest, problem));
    } else {
        evaluate(app, q, now, &mut target, &mut reasons, &mut last_presence).await?;
        let known = !reasons.iter().any(|(code, _)| {
            matches!(code, DenyReason::WorkerUnknown | DenyReason::DeviceNotEnrolled | DenyReason::InvalidRequest)
        });
        if known {
            // This very session may complete a pattern (a shared egress, a
            // jump across the map): its flags count in this decision.
            let credential_id = target.credentials.first().map(|c| c.id.clone()).unwrap_or_default();
            let known = risk_live::Known {
                worker: target.worker.as_ref(),
                tenant: target.tenant.as_ref(),
                first_enrollment_ip: Some(target.first_enrollment_ip.as_deref()),
            };
            let raised = risk_live::observe_known(
                app,
                risk_live::Observation {
                    tenant_id: q.tenant_id,
                    worker: q.worker_external_id.trim(),
                    device_id: &target.device_id,
                    credential_id: &credential_id,
                    session_id: &session_id,
                    ip: source_ip.as_deref().unwrap_or_default(),
                    at_ms: now,
                    what: risk_live::Happening::Session { gateway: truncate(q.gateway_id) },
                },
                known,
            )
            .await?;
            for flag in raised.iter().filter(|f| f.tenant == q.tenant_id) {
                if flag.device == target.device_id || flag.worker == q.worker_external_id.trim() {
                    target.note_open(flag.kind.as_str(), flag.severity);
                }
            }
        }
    }
    let (open_flags, flag_reasons) = target.weigh_flags();
    reasons.extend(flag_reasons);
    let allow = reasons.is_empty();
    let credential_id = match target.credentials.as_slice() {
        [one] => one.id.clone(),
        _ => q.credential_id.trim().to_string(),
    };
    let session = SessionRecord {
        id: session_id,
        tenant_id: q.tenant_id.to_string(),
        worker_external_id: truncate(q.worker_external_id),
        device_id: truncate(&target.device_id),
        credential_id: truncate(&credential_id),
        source_ip: source_ip.unwrap_or_else(|| truncate(q.source_ip)),
        gateway_id: truncate(q.gateway_id),
        decision: if allow { "allow" } else { "deny" }.into(),
        reasons_json: reasons_to_json(&reasons),
        would_deny_json: reasons_to_json(&target.would_deny),
        at_ms: now,
    };
    let decision = AccessDecision {
        allow,
        reasons,
        would_deny: target.would_deny,
        session_id: session.id.clone(),
        worker_external_id: session.worker_external_id.clone(),
        device_id: session.device_id.clone(),
        credential_id: session.credential_id.clone(),
        last_presence_at_ms: last_presence,
        open_flags,
    };
    append_queue::record_session(&app.store, session).await?;
    Ok(decision)
}

fn truncate(value: &str) -> String {
    value.trim().chars().take(256).collect()
}

fn malformed(q: &AccessQuery<'_>, ip_ok: bool) -> Option<String> {
    let too_long = |s: &str| s.len() > 256;
    if q.worker_external_id.trim().is_empty() {
        return Some("worker_external_id is required".into());
    }
    if q.device_id.trim().is_empty() && q.credential_id.trim().is_empty() {
        return Some("one of device_id or credential_id is required".into());
    }
    if !ip_ok {
        return Some(format!("source_ip {:?} is not an IP address", truncate(q.source_ip)));
    }
    if [q.worker_external_id, q.device_id, q.credential_id, q.gateway_id].into_iter().any(too_long) {
        return Some("a field is longer than 256 bytes".into());
    }
    None
}
