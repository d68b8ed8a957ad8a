//! The tenant policy as the API shows and changes it, with its attestation tiers
//! (docs/trust.md#attestation-tiers).

use super::flag_policy;
use crate::domain::error::{ApiError, ApiResult};
use crate::store::credentials::Tier;
use crate::store::tenants::{self, Enforcement, TierAction};
use tether_proto::v1 as pb;

pub(super) fn policy_json(p: &tenants::Policy) -> serde_json::Value {
    serde_json::json!({
        "rp_id": p.rp_id, "origin": p.origin, "allow_unattested": p.allow_unattested(),
        "hardware_unverified": p.hardware_unverified.as_str(), "self_or_none": p.self_or_none.as_str(),
        "enforcement": p.enforcement.as_str(),
        "allowed_aaguids": p.allowed_aaguids, "presence_interval_s": p.presence_interval_s,
        "challenge_deadline_s": p.challenge_deadline_s, "presence_window_s": p.presence_window_s,
        "flag_policy": p.flag_policy.to_json(),
        "office_egress": p.office_egress.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

pub(super) fn policy_to_proto(p: &tenants::Policy) -> pb::Policy {
    pb::Policy {
        rp_id: p.rp_id.clone(),
        origin: p.origin.clone(),
        allow_unattested: p.allow_unattested(),
        allowed_aaguids: p.allowed_aaguids.clone(),
        presence_interval_seconds: u64::try_from(p.presence_interval_s).unwrap_or(0),
        challenge_deadline_seconds: u64::try_from(p.challenge_deadline_s).unwrap_or(0),
        presence_window_seconds: u64::try_from(p.presence_window_s).unwrap_or(0),
        flag_policy: Some(flag_policy::to_proto(&p.flag_policy)),
        office_egress_cidrs: p.office_egress.iter().map(ToString::to_string).collect(),
        hardware_unverified: action_to_proto(p.hardware_unverified) as i32,
        self_or_none: action_to_proto(p.self_or_none) as i32,
        enforcement: match p.enforcement {
            Enforcement::Enforce => pb::EnforcementMode::Enforce,
            Enforcement::Monitor => pb::EnforcementMode::Monitor,
        } as i32,
    }
}

pub fn tier_to_proto(tier: Tier) -> pb::AttestationTier {
    match tier {
        Tier::HardwareAttested => pb::AttestationTier::HardwareAttested,
        Tier::HardwareUnverified => pb::AttestationTier::HardwareUnverified,
        Tier::SelfOrNone => pb::AttestationTier::SelfOrNone,
    }
}

fn action_to_proto(action: TierAction) -> pb::TierAction {
    match action {
        TierAction::Allow => pb::TierAction::Allow,
        TierAction::AllowAndFlag => pb::TierAction::AllowAndFlag,
        TierAction::Deny => pb::TierAction::Deny,
    }
}

fn action_from_proto(field: &str, value: i32) -> ApiResult<TierAction> {
    match pb::TierAction::try_from(value) {
        Ok(pb::TierAction::Allow) => Ok(TierAction::Allow),
        Ok(pb::TierAction::AllowAndFlag) => Ok(TierAction::AllowAndFlag),
        Ok(pb::TierAction::Deny) => Ok(TierAction::Deny),
        _ => Err(ApiError::invalid(format!("{field}: {value} is not allow, allow_and_flag or deny"))),
    }
}

/// The request's tier fields, in the documented order: `allow_unattested` is shorthand for both
/// tiers, then a tier named on its own overrides it.
pub(super) fn apply_tiers(r: &pb::UpdatePolicyRequest, p: &mut tenants::Policy) -> ApiResult<()> {
    if let Some(allow) = r.allow_unattested {
        p.set_allow_unattested(allow);
    }
    if let Some(v) = r.hardware_unverified {
        p.hardware_unverified = action_from_proto("hardware_unverified", v)?;
    }
    if let Some(v) = r.self_or_none {
        p.self_or_none = action_from_proto("self_or_none", v)?;
    }
    if let Some(v) = r.enforcement {
        p.enforcement = match pb::EnforcementMode::try_from(v) {
            Ok(pb::EnforcementMode::Enforce) => Enforcement::Enforce,
            Ok(pb::EnforcementMode::Monitor) => Enforcement::Monitor,
            _ => return Err(ApiError::invalid(format!("enforcement: {v} is not enforce or monitor"))),
        };
    }
    Ok(())
}
