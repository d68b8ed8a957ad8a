//! Attestation tiers: what a credential's attestation proved, and what the tenant's policy lets
//! a credential of each tier do. Monitor mode turns a tier's DENY into a recorded "would deny"
//! so that an employer can see whom a stricter policy would lock out before enforcing it.
//! Only tier denials are softened: every other reason to refuse stays a refusal.

use crate::store::credentials::Tier;
use crate::store::tenants::{Enforcement, Policy, TierAction};

/// What the policy does with one credential's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed, and a review `unattested_hardware` flag is raised at enrollment.
    AllowAndFlag,
    /// Refused (enforce mode).
    Deny,
    /// Monitor mode's DENY: allowed, recorded as "would deny".
    WouldDeny,
}

pub fn action(policy: &Policy, tier: Tier) -> TierAction {
    match tier {
        // Proven hardware of an allowed model: nothing for a tier policy to refuse.
        Tier::HardwareAttested => TierAction::Allow,
        Tier::HardwareUnverified => policy.hardware_unverified,
        Tier::SelfOrNone => policy.self_or_none,
    }
}

pub fn verdict(policy: &Policy, tier: Tier) -> Verdict {
    match (action(policy, tier), policy.enforcement) {
        (TierAction::Allow, _) => Verdict::Allow,
        (TierAction::AllowAndFlag, _) => Verdict::AllowAndFlag,
        (TierAction::Deny, Enforcement::Enforce) => Verdict::Deny,
        (TierAction::Deny, Enforcement::Monitor) => Verdict::WouldDeny,
    }
}

/// A WebAuthn credential's tier. Without a trusted chain of an allowed model nothing is proven:
/// a chain to an unknown root costs a software authenticator one self-made CA, and a model the
/// tenant's AAGUID list leaves out is one the tenant did not accept as proof. Neither may sit in
/// the tier that admits cloud vTPMs, so both are self_or_none.
pub fn webauthn_tier(attested: bool) -> Tier {
    if attested { Tier::HardwareAttested } else { Tier::SelfOrNone }
}

/// A TPM attestation key's tier. Credential activation proved the key sits beside the EK the
/// device presented; only the EK certificate says whose TPM that is.
pub fn tpm_tier(ek_certificate_verified: bool) -> Tier {
    if ek_certificate_verified { Tier::HardwareAttested } else { Tier::HardwareUnverified }
}

/// The sentence a tier refusal (or would-be refusal) carries.
pub fn refusal(tier: Tier) -> String {
    format!("this tenant's policy denies the {} tier", tier.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_unattested: bool) -> Policy {
        let mut p = Policy::new("example.com", "https://example.com");
        p.set_allow_unattested(allow_unattested);
        p
    }

    #[test]
    fn allow_unattested_is_shorthand_for_both_tiers_and_keeps_the_old_behaviour() {
        let closed = policy(false);
        assert_eq!(
            Policy::new("example.com", "https://example.com"),
            closed,
            "a new tenant refuses unattested credentials"
        );
        assert!(!closed.allow_unattested());
        assert_eq!(verdict(&closed, Tier::HardwareUnverified), Verdict::Deny);
        assert_eq!(verdict(&closed, Tier::SelfOrNone), Verdict::Deny);
        // allow_unattested = true always enrolled unattested credentials with a review flag.
        let open = policy(true);
        assert!(open.allow_unattested());
        assert_eq!(verdict(&open, Tier::HardwareUnverified), Verdict::AllowAndFlag);
        assert_eq!(verdict(&open, Tier::SelfOrNone), Verdict::AllowAndFlag);
        let mut one = policy(true);
        one.self_or_none = TierAction::Deny;
        assert!(!one.allow_unattested(), "one denying tier means not every unattested credential may enroll");
    }

    #[test]
    fn hardware_attested_is_always_allowed_even_when_everything_else_is_denied() {
        for enforcement in [Enforcement::Enforce, Enforcement::Monitor] {
            let mut p = policy(false);
            p.enforcement = enforcement;
            assert_eq!(verdict(&p, Tier::HardwareAttested), Verdict::Allow);
        }
    }

    #[test]
    fn monitor_mode_turns_only_deny_into_would_deny() {
        let mut p = policy(false);
        p.hardware_unverified = TierAction::Allow;
        p.enforcement = Enforcement::Monitor;
        assert_eq!(verdict(&p, Tier::SelfOrNone), Verdict::WouldDeny);
        assert_eq!(verdict(&p, Tier::HardwareUnverified), Verdict::Allow);
        p.self_or_none = TierAction::AllowAndFlag;
        assert_eq!(verdict(&p, Tier::SelfOrNone), Verdict::AllowAndFlag);
        p.enforcement = Enforcement::Enforce;
        p.self_or_none = TierAction::Deny;
        assert_eq!(verdict(&p, Tier::SelfOrNone), Verdict::Deny);
    }

    #[test]
    fn an_unverified_tpm_is_hardware_unverified_and_unattested_webauthn_is_self_or_none() {
        assert_eq!(tpm_tier(false), Tier::HardwareUnverified);
        assert_eq!(tpm_tier(true), Tier::HardwareAttested);
        assert_eq!(webauthn_tier(false), Tier::SelfOrNone);
        assert_eq!(webauthn_tier(true), Tier::HardwareAttested);
        assert!(Tier::HardwareAttested > Tier::HardwareUnverified && Tier::HardwareUnverified > Tier::SelfOrNone);
        for tier in [Tier::HardwareAttested, Tier::HardwareUnverified, Tier::SelfOrNone] {
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
        }
        assert_eq!(Tier::parse("attested"), None);
    }
}
