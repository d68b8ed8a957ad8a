//! The tenant policy, its flag policy included.

use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Fields, Render, seconds_cell};

use super::*;

#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub rp_id: String,
    pub origin: String,
    pub allow_unattested: bool,
    /// allow, allow_and_flag or deny.
    pub hardware_unverified: String,
    pub self_or_none: String,
    /// enforce or monitor.
    pub enforcement: String,
    pub allowed_aaguids: Vec<String>,
    pub presence_interval_seconds: u64,
    pub challenge_deadline_seconds: u64,
    pub presence_window_seconds: u64,
    pub flag_policy: FlagPolicyView,
    pub office_egress_cidrs: Vec<String>,
}

/// `deny_at` is the lowest severity that denies; each rule is
/// `{"kind", "deny_at"}` or `{"kind", "report_only": true}`.
#[derive(Debug, Serialize)]
pub struct FlagPolicyView {
    pub deny_at: String,
    pub kind_rules: Vec<FlagKindRuleView>,
}

#[derive(Debug, Serialize)]
pub struct FlagKindRuleView {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_at: Option<String>,
    pub report_only: bool,
}

impl From<Option<pb::FlagPolicy>> for FlagPolicyView {
    fn from(p: Option<pb::FlagPolicy>) -> Self {
        let p = p.unwrap_or_default();
        let deny_at = match p.deny_at {
            0 => "high".to_string(),
            other => flag_severity(other),
        };
        let kind_rules = p
            .kind_rules
            .into_iter()
            .map(|r| FlagKindRuleView {
                kind: r.kind,
                deny_at: (!r.report_only).then(|| flag_severity(r.deny_at)),
                report_only: r.report_only,
            })
            .collect();
        Self { deny_at, kind_rules }
    }
}

impl FlagPolicyView {
    /// "high and above; relocated: report only; shared_egress: review and above".
    fn summary(&self) -> String {
        let mut parts = vec![format!("{} and above", self.deny_at)];
        for rule in &self.kind_rules {
            match &rule.deny_at {
                Some(severity) if !rule.report_only => parts.push(format!("{}: {severity} and above", rule.kind)),
                _ => parts.push(format!("{}: report only", rule.kind)),
            }
        }
        parts.join("; ")
    }
}

fn tier_action(value: i32) -> String {
    match pb::TierAction::try_from(value) {
        Ok(pb::TierAction::Allow) => "allow".into(),
        Ok(pb::TierAction::AllowAndFlag) => "allow_and_flag".into(),
        Ok(pb::TierAction::Deny) => "deny".into(),
        _ => format!("unknown ({value})"),
    }
}

impl From<pb::Policy> for PolicyView {
    fn from(p: pb::Policy) -> Self {
        Self {
            rp_id: p.rp_id,
            origin: p.origin,
            allow_unattested: p.allow_unattested,
            hardware_unverified: tier_action(p.hardware_unverified),
            self_or_none: tier_action(p.self_or_none),
            enforcement: match pb::EnforcementMode::try_from(p.enforcement) {
                Ok(pb::EnforcementMode::Monitor) => "monitor".into(),
                Ok(pb::EnforcementMode::Enforce) => "enforce".into(),
                _ => format!("unknown ({})", p.enforcement),
            },
            allowed_aaguids: p.allowed_aaguids,
            presence_interval_seconds: p.presence_interval_seconds,
            challenge_deadline_seconds: p.challenge_deadline_seconds,
            presence_window_seconds: p.presence_window_seconds,
            flag_policy: FlagPolicyView::from(p.flag_policy),
            office_egress_cidrs: p.office_egress_cidrs,
        }
    }
}

impl Render for PolicyView {
    fn to_text(&self) -> String {
        let aaguids = if self.allowed_aaguids.is_empty() { "any".to_string() } else { self.allowed_aaguids.join(", ") };
        Fields::new()
            .add("rp id", &self.rp_id)
            .add("origin", &self.origin)
            .add("allow unattested", yes_no(self.allow_unattested))
            .add("hardware_unverified tier", &self.hardware_unverified)
            .add("self_or_none tier", &self.self_or_none)
            .add("enforcement", &self.enforcement)
            .add("allowed aaguids", aaguids)
            .add("presence interval", seconds_cell(self.presence_interval_seconds))
            .add("challenge deadline", seconds_cell(self.challenge_deadline_seconds))
            .add("presence window", seconds_cell(self.presence_window_seconds))
            .add("flags that deny", self.flag_policy.summary())
            .add(
                "office egress",
                if self.office_egress_cidrs.is_empty() {
                    "none".to_string()
                } else {
                    self.office_egress_cidrs.join(", ")
                },
            )
            .render()
    }
}
