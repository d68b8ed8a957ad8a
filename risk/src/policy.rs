//! A tenant's flag policy: which open flags deny access and which are only
//! reported. Stored as JSON in the tenant row; the empty string is the
//! default (deny on high, report the rest).

use crate::{FlagKind, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Flag kinds raised outside the risk engine: a TPM quote against the tenant's PCR policy, and
/// FIDO metadata marking an enrolled authenticator model compromised.
const OTHER_KINDS: [&str; 2] = ["pcr_policy_mismatch", "authenticator_compromised"];

/// What one kind's open flags do, overriding the tenant-wide threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindRule {
    DenyAt(Severity),
    ReportOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagPolicy {
    pub deny_at: Severity,
    #[serde(default)]
    pub kinds: BTreeMap<String, KindRule>,
}

impl Default for FlagPolicy {
    fn default() -> Self {
        FlagPolicy { deny_at: Severity::High, kinds: BTreeMap::new() }
    }
}

/// Why a policy cannot be accepted; names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagPolicyError {
    #[error("{0:?} is not a flag kind; known kinds: {known}", known = known_kinds().join(", "))]
    UnknownKind(String),
    #[error("the kind {0:?} has two rules; give one")]
    DuplicateKind(String),
    #[error("stored flag policy is unreadable: {0}")]
    Stored(String),
}

pub fn known_kinds() -> Vec<&'static str> {
    FlagKind::ALL.iter().map(|k| k.as_str()).chain(OTHER_KINDS).collect()
}

impl FlagPolicy {
    /// A policy from a threshold and per-kind rules; every kind must be known
    /// and appear once.
    pub fn new(
        deny_at: Severity,
        rules: impl IntoIterator<Item = (String, KindRule)>,
    ) -> Result<FlagPolicy, FlagPolicyError> {
        let known = known_kinds();
        let mut kinds = BTreeMap::new();
        for (kind, rule) in rules {
            if !known.contains(&kind.as_str()) {
                return Err(FlagPolicyError::UnknownKind(kind));
            }
            if kinds.insert(kind.clone(), rule).is_some() {
                return Err(FlagPolicyError::DuplicateKind(kind));
            }
        }
        Ok(FlagPolicy { deny_at, kinds })
    }

    /// Whether an open flag of this kind and severity denies access.
    pub fn denies(&self, kind: &str, severity: Severity) -> bool {
        match self.kinds.get(kind) {
            Some(KindRule::ReportOnly) => false,
            Some(KindRule::DenyAt(threshold)) => severity >= *threshold,
            None => severity >= self.deny_at,
        }
    }

    /// The stored form: empty for the default, so tenants created before
    /// flag policies existed read as the default.
    pub fn to_stored(&self) -> String {
        if *self == FlagPolicy::default() {
            return String::new();
        }
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form. Unreadable JSON is an error, never a weaker
    /// policy: the access check then fails and the gateway denies.
    pub fn from_stored(stored: &str) -> Result<FlagPolicy, FlagPolicyError> {
        if stored.trim().is_empty() {
            return Ok(FlagPolicy::default());
        }
        serde_json::from_str(stored).map_err(|e| FlagPolicyError::Stored(e.to_string()))
    }

    /// The audit log's form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A stored flag's severity. Anything unrecognised reads as high: a flag the
/// code cannot weigh must not weigh less than the worst.
pub fn stored_severity(name: &str) -> Severity {
    match name {
        "info" => Severity::Info,
        "review" => Severity::Review,
        _ => Severity::High,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_denies_high_only() {
        let policy = FlagPolicy::default();
        assert!(policy.denies("relocated", Severity::High));
        assert!(!policy.denies("relocated", Severity::Review));
        assert!(!policy.denies("shared_egress", Severity::Info));
    }

    #[test]
    fn kind_rules_override_the_threshold_both_ways() {
        let policy = FlagPolicy::new(
            Severity::Review,
            [
                ("relocated".to_string(), KindRule::ReportOnly),
                ("shared_egress".to_string(), KindRule::DenyAt(Severity::High)),
            ],
        )
        .unwrap();
        assert!(policy.denies("unattested_hardware", Severity::Review));
        assert!(!policy.denies("unattested_hardware", Severity::Info));
        assert!(!policy.denies("relocated", Severity::High));
        assert!(!policy.denies("shared_egress", Severity::Review));
        assert!(policy.denies("shared_egress", Severity::High));
    }

    #[test]
    fn unknown_and_repeated_kinds_are_refused() {
        let unknown = FlagPolicy::new(Severity::High, [("relocation".to_string(), KindRule::ReportOnly)]);
        assert!(matches!(unknown, Err(FlagPolicyError::UnknownKind(k)) if k == "relocation"));
        let twice = FlagPolicy::new(
            Severity::High,
            [
                ("relocated".to_string(), KindRule::ReportOnly),
                ("relocated".to_string(), KindRule::DenyAt(Severity::Info)),
            ],
        );
        assert!(matches!(twice, Err(FlagPolicyError::DuplicateKind(_))));
        assert!(FlagPolicy::new(Severity::High, [("pcr_policy_mismatch".to_string(), KindRule::ReportOnly)]).is_ok());
        assert!(
            FlagPolicy::new(
                Severity::High,
                [("authenticator_compromised".to_string(), KindRule::DenyAt(Severity::Review))]
            )
            .is_ok(),
            "a rule for the FIDO metadata kind, e.g. to deny on a user-verification bypass"
        );
    }

    #[test]
    fn the_stored_form_reads_back_and_the_default_is_empty() {
        assert_eq!(FlagPolicy::default().to_stored(), "");
        assert_eq!(FlagPolicy::from_stored("").unwrap(), FlagPolicy::default());
        let policy =
            FlagPolicy::new(Severity::Info, [("tpm_anomaly".to_string(), KindRule::DenyAt(Severity::High))]).unwrap();
        assert_eq!(FlagPolicy::from_stored(&policy.to_stored()).unwrap(), policy);
    }

    #[test]
    fn an_unreadable_stored_policy_is_an_error_not_a_default() {
        assert!(matches!(FlagPolicy::from_stored("{\"deny_at\": \"never\"}"), Err(FlagPolicyError::Stored(_))));
        assert!(matches!(FlagPolicy::from_stored("not json"), Err(FlagPolicyError::Stored(_))));
    }
}
