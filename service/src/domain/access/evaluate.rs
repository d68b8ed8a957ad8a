//! What the stored rows say about one access request: the deny reasons, in
//! the order and with the text gateways and tests rely on. The rows come in
//! one statement (crate::store::decision); every missing row denies.

use super::AccessQuery;
use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::domain::risk_live::severity_name;
use crate::domain::tiers::{self, Verdict};
use crate::store::credentials::Tier;
use crate::store::decision::{self, CredentialState};
use crate::store::tenants::Policy;
use crate::store::{inventory, tenants};
use std::collections::BTreeMap;
use tether_proto::v1::DenyReason;
use tether_risk::FlagPolicy;
use tether_risk::Severity;
use tether_risk::policy::stored_severity;

pub(super) struct Target {
    /// Rows read while evaluating, handed to the risk event (risk_live::Known).
    pub worker: Option<inventory::Worker>,
    pub tenant: Option<tenants::Tenant>,
    /// The worker's first enrollment address, read with the worker.
    pub first_enrollment_ip: Option<String>,
    pub device_id: String,
    /// The active credentials the decision counted, newest first.
    pub credentials: Vec<CredentialState>,
    /// Open kinds on the device or worker and their highest severity.
    pub open_flags: BTreeMap<String, Severity>,
    pub flag_policy: FlagPolicy,
    /// Tier denials monitor mode records instead of enforcing.
    pub would_deny: Vec<(DenyReason, String)>,
}

impl Target {
    pub fn new(device_id: &str) -> Target {
        Target {
            worker: None,
            tenant: None,
            first_enrollment_ip: None,
            device_id: device_id.trim().to_string(),
            credentials: Vec::new(),
            open_flags: BTreeMap::new(),
            flag_policy: FlagPolicy::default(),
            would_deny: Vec::new(),
        }
    }

    pub fn note_open(&mut self, kind: &str, severity: Severity) {
        let highest = self.open_flags.entry(kind.to_string()).or_insert(severity);
        *highest = (*highest).max(severity);
    }

    /// The open flags as the tenant's policy weighs them, and the reasons
    /// they give to deny: high severities and lower ones apart, so gateways
    /// keyed on `open_high_severity_flags` keep working.
    pub fn weigh_flags(&self) -> (Vec<super::OpenFlag>, Vec<(DenyReason, String)>) {
        let open: Vec<super::OpenFlag> = self
            .open_flags
            .iter()
            .map(|(kind, &severity)| super::OpenFlag {
                kind: kind.clone(),
                severity,
                denies: self.flag_policy.denies(kind, severity),
            })
            .collect();
        let denying = |high: bool| -> Vec<String> {
            open.iter()
                .filter(|f| f.denies && (f.severity == Severity::High) == high)
                .map(|f| if high { f.kind.clone() } else { format!("{} ({})", f.kind, severity_name(f.severity)) })
                .collect()
        };
        let mut reasons = Vec::new();
        let high = denying(true);
        if !high.is_empty() {
            reasons.push((DenyReason::OpenHighSeverityFlags, format!("open high-severity flags: {}", high.join(", "))));
        }
        let lower = denying(false);
        if !lower.is_empty() {
            reasons.push((
                DenyReason::OpenFlags,
                format!("open flags the tenant's flag policy denies on: {}", lower.join(", ")),
            ));
        }
        (open, reasons)
    }
}

pub(super) async fn evaluate(
    app: &App,
    q: &AccessQuery<'_>,
    now: i64,
    target: &mut Target,
    reasons: &mut Vec<(DenyReason, String)>,
    last_presence: &mut i64,
) -> ApiResult<()> {
    let worker_id = q.worker_external_id.trim();
    let credential_id = q.credential_id.trim();
    let inputs =
        decision::decision_inputs(&app.store, q.tenant_id, worker_id, credential_id, &target.device_id).await?;
    target.worker = inputs.worker;
    target.first_enrollment_ip = inputs.first_enrollment_ip;
    if target.worker.is_none() {
        reasons.push((DenyReason::WorkerUnknown, format!("no worker {worker_id:?} in this tenant")));
        return Ok(());
    }
    let mut named_credential = None;
    if !credential_id.is_empty() {
        match inputs.credential {
            Some(c) if target.device_id.is_empty() || target.device_id == c.device_id => {
                target.device_id = c.device_id.clone();
                named_credential = Some(c);
            }
            Some(_) => {
                reasons.push((DenyReason::InvalidRequest, "the credential does not belong to that device".into()));
                return Ok(());
            }
            None => {
                reasons.push((DenyReason::DeviceNotEnrolled, "no such credential in this tenant".into()));
                return Ok(());
            }
        }
    }
    // The join looked the device up by the named device id, or else by the named credential's.
    let Some(device) = inputs.device.filter(|d| d.id == target.device_id) else {
        reasons.push((DenyReason::DeviceNotEnrolled, "no such device in this tenant's inventory".into()));
        return Ok(());
    };
    if device.worker_external_id.as_deref() != Some(worker_id) {
        reasons.push((DenyReason::DeviceNotAssignedToWorker, format!("the device is not assigned to {worker_id:?}")));
    }
    if device.revoked_at_ms.is_some() {
        reasons.push((DenyReason::DeviceRevoked, "the device has been revoked".into()));
    }
    target.tenant = inputs.tenant;
    let tenant = target.tenant.as_ref();
    if let Some(tenant) = tenant {
        target.flag_policy = tenant.policy.flag_policy.clone();
    }
    let candidates: Vec<CredentialState> = match named_credential {
        Some(c) => {
            if c.revoked_at_ms.is_some() {
                reasons.push((DenyReason::CredentialRevoked, "the credential has been revoked".into()));
            }
            vec![c]
        }
        None => inputs.device_credentials,
    };
    let active: Vec<CredentialState> = candidates.into_iter().filter(|c| c.revoked_at_ms.is_none()).collect();
    if active.is_empty() {
        if device.revoked_at_ms.is_none() && !reasons.iter().any(|(c, _)| *c == DenyReason::CredentialRevoked) {
            reasons.push((DenyReason::DeviceNotEnrolled, "the device has no active enrolled credential".into()));
        }
    } else {
        let window_ms = tenant.map(|t| t.policy.presence_window_s.saturating_mul(1000)).unwrap_or(0);
        // The device counts at its best credential's tier, read from the rows already loaded.
        // Without a tenant row nothing is allowed beyond hardware-attested (fail closed).
        let best = active.iter().map(|c| c.tier).max().unwrap_or(Tier::SelfOrNone);
        let closed = Policy::new("", "");
        let verdict = tiers::verdict(tenant.map_or(&closed, |t| &t.policy), best);
        if matches!(verdict, Verdict::Deny | Verdict::WouldDeny) {
            let reason = (
                DenyReason::Unattested,
                format!("no credential on the device is hardware-attested; {}", tiers::refusal(best)),
            );
            if verdict == Verdict::Deny { reasons.push(reason) } else { target.would_deny.push(reason) }
        }
        *last_presence = active.iter().filter_map(|c| c.last_presence_at_ms).max().unwrap_or(0);
        if *last_presence == 0 {
            reasons.push((DenyReason::PresenceNever, "the device has never answered a presence challenge".into()));
        } else if now - *last_presence > window_ms {
            reasons.push((
                DenyReason::PresenceStale,
                format!(
                    "the last successful presence answer was {} s ago; the window is {} s",
                    (now - *last_presence) / 1000,
                    window_ms / 1000
                ),
            ));
        }
    }
    target.credentials = active;
    for (kind, severity) in inputs.open_flags {
        target.note_open(&kind, stored_severity(&severity));
    }
    Ok(())
}
