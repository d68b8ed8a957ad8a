//! `tether policy show|set`, and `tether policy pcr …` (PCR policy for TPM devices).

pub mod pcr;

use clap::{ArgGroup, Args, Subcommand};
use tether_proto::v1::{
    EnforcementMode, FlagKindRule, FlagPolicy, FlagSeverity, GetPolicyRequest, TierAction, UpdatePolicyRequest,
};

use super::Ctx;
use crate::output::emit;
use crate::parse;
use crate::views::PolicyView;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the tenant's policy.
    Show,
    /// Change some of the policy; options not given keep their value.
    Set(PolicySetArgs),
    /// Expected PCR values for TPM devices, per model or per device.
    #[command(subcommand)]
    Pcr(pcr::PcrCommand),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)))]
pub struct PolicySetArgs {
    /// WebAuthn relying party id (a domain).
    #[arg(long, value_name = "ID", group = "change")]
    pub rp_id: Option<String>,
    /// The origin agents present in clientDataJSON.
    #[arg(long, value_name = "URL", group = "change")]
    pub origin: Option<String>,
    /// Shorthand for both tiers below hardware-attested: true = allow-and-flag, false = deny.
    /// --hardware-unverified and --self-or-none, when also given, override it.
    #[arg(long, value_name = "true|false", group = "change")]
    pub allow_unattested: Option<bool>,
    /// What a TPM whose EK has no certificate that verifies (a cloud vTPM) may do.
    #[arg(long, value_name = "allow|allow-and-flag|deny", value_parser = parse_tier_action, group = "change")]
    pub hardware_unverified: Option<TierAction>,
    /// What a credential with self or none attestation, an untrusted root or a model outside
    /// the AAGUID list may do.
    #[arg(long, value_name = "allow|allow-and-flag|deny", value_parser = parse_tier_action, group = "change")]
    pub self_or_none: Option<TierAction>,
    /// monitor: tier denials are recorded as "would deny" but not enforced; enforce: they deny.
    #[arg(long, value_name = "enforce|monitor", value_parser = parse_enforcement, group = "change")]
    pub enforcement: Option<EnforcementMode>,
    /// Only these authenticator models count as attested; `none` clears the list.
    #[arg(long, value_name = "UUID,UUID|none", value_parser = parse::aaguid_list, group = "change")]
    pub allowed_aaguids: Option<parse::AaguidList>,
    /// Time between scheduled presence challenges per device.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub presence_interval: Option<u64>,
    /// Time a device has to answer a challenge.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub challenge_deadline: Option<u64>,
    /// A successful presence answer older than this denies access.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub presence_window: Option<u64>,
    /// Open flags at this severity or above deny access (kinds without a rule of their own);
    /// lower ones are reported with the decision. The default is high.
    #[arg(long, value_name = "info|review|high", value_parser = parse_severity, group = "change")]
    pub deny_flags_at: Option<FlagSeverity>,
    /// A rule for one flag kind, replacing its previous rule: KIND=info|review|high (deny at
    /// that severity or above), KIND=report-only (never deny), or KIND=default (drop the rule).
    /// Repeatable.
    #[arg(long, value_name = "KIND=RULE", value_parser = parse_flag_rule, group = "change")]
    pub flag_rule: Vec<FlagRuleArg>,
    /// Drop every kind rule first (before any --flag-rule).
    #[arg(long, group = "change")]
    pub clear_flag_rules: bool,
    /// The employer's office egresses (CIDRs or addresses); its own devices there never count
    /// as a shared egress. `none` clears the list.
    #[arg(long, value_name = "CIDR,CIDR|none", value_parser = parse_offices, group = "change")]
    pub office_egress: Option<Offices>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offices(pub Vec<String>);

fn parse_offices(text: &str) -> Result<Offices, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Offices(Vec::new()));
    }
    let list: Vec<String> = text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if list.is_empty() {
        return Err("give CIDRs separated by commas, or none".into());
    }
    Ok(Offices(list))
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlagRuleArg {
    pub kind: String,
    /// None: back to the tenant-wide threshold.
    pub rule: Option<FlagKindRule>,
}

fn parse_tier_action(text: &str) -> Result<TierAction, String> {
    match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "allow" => Ok(TierAction::Allow),
        "allow-and-flag" => Ok(TierAction::AllowAndFlag),
        "deny" => Ok(TierAction::Deny),
        other => Err(format!("{other:?} is not a tier action: use allow, allow-and-flag or deny")),
    }
}

fn parse_enforcement(text: &str) -> Result<EnforcementMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "enforce" => Ok(EnforcementMode::Enforce),
        "monitor" => Ok(EnforcementMode::Monitor),
        other => Err(format!("{other:?} is not an enforcement mode: use enforce or monitor")),
    }
}

fn parse_severity(text: &str) -> Result<FlagSeverity, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "info" => Ok(FlagSeverity::Info),
        "review" => Ok(FlagSeverity::Review),
        "high" => Ok(FlagSeverity::High),
        other => Err(format!("{other:?} is not a severity: use info, review or high")),
    }
}

fn parse_flag_rule(text: &str) -> Result<FlagRuleArg, String> {
    let (kind, rule) =
        text.split_once('=').ok_or_else(|| format!("{text:?}: write KIND=info|review|high|report-only|default"))?;
    let kind = kind.trim().to_string();
    if kind.is_empty() {
        return Err(format!("{text:?}: the flag kind is missing before '='"));
    }
    let rule = match rule.trim().to_ascii_lowercase().as_str() {
        "default" => None,
        "report-only" | "report_only" => Some(FlagKindRule { kind: kind.clone(), deny_at: 0, report_only: true }),
        severity => Some(FlagKindRule {
            kind: kind.clone(),
            deny_at: parse_severity(severity)
                .map_err(|_| format!("{text:?}: the rule must be info, review, high, report-only or default"))?
                as i32,
            report_only: false,
        }),
    };
    Ok(FlagRuleArg { kind, rule })
}

impl PolicySetArgs {
    fn changes_flag_policy(&self) -> bool {
        self.deny_flags_at.is_some() || !self.flag_rule.is_empty() || self.clear_flag_rules
    }

    /// The whole flag policy after applying these options to `current`
    /// (the server replaces it as a unit); None when no option touches it.
    pub fn flag_policy(&self, current: Option<FlagPolicy>) -> Option<FlagPolicy> {
        if !self.changes_flag_policy() {
            return None;
        }
        let mut policy = current.unwrap_or_default();
        if let Some(severity) = self.deny_flags_at {
            policy.deny_at = severity as i32;
        }
        if self.clear_flag_rules {
            policy.kind_rules.clear();
        }
        for arg in &self.flag_rule {
            policy.kind_rules.retain(|r| r.kind != arg.kind);
            policy.kind_rules.extend(arg.rule.clone());
        }
        Some(policy)
    }

    pub fn to_request(&self, current_flag_policy: Option<FlagPolicy>) -> UpdatePolicyRequest {
        UpdatePolicyRequest {
            rp_id: self.rp_id.clone(),
            origin: self.origin.clone(),
            allow_unattested: self.allow_unattested,
            set_allowed_aaguids: self.allowed_aaguids.is_some(),
            allowed_aaguids: self.allowed_aaguids.as_ref().map(|list| list.0.clone()).unwrap_or_default(),
            presence_interval_seconds: self.presence_interval,
            challenge_deadline_seconds: self.challenge_deadline,
            presence_window_seconds: self.presence_window,
            flag_policy: self.flag_policy(current_flag_policy),
            set_office_egress_cidrs: self.office_egress.is_some(),
            office_egress_cidrs: self.office_egress.as_ref().map(|o| o.0.clone()).unwrap_or_default(),
            hardware_unverified: self.hardware_unverified.map(|a| a as i32),
            self_or_none: self.self_or_none.map(|a| a as i32),
            enforcement: self.enforcement.map(|e| e as i32),
        }
    }
}

pub async fn run(ctx: &Ctx, command: PolicyCommand) -> anyhow::Result<i32> {
    let policy = match command {
        PolicyCommand::Show => ctx.admin().await?.get_policy(GetPolicyRequest {}).await?.into_inner(),
        PolicyCommand::Set(args) => {
            let mut admin = ctx.admin().await?;
            let current = if args.changes_flag_policy() {
                admin.get_policy(GetPolicyRequest {}).await?.into_inner().flag_policy
            } else {
                None
            };
            admin.update_policy(args.to_request(current)).await?.into_inner()
        }
        PolicyCommand::Pcr(command) => return pcr::run(ctx, command).await,
    };
    emit(ctx.output, &PolicyView::from(policy))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        set: PolicySetArgs,
    }

    fn set(args: &[&str]) -> PolicySetArgs {
        Cli::try_parse_from(std::iter::once("policy-set").chain(args.iter().copied())).unwrap().set
    }

    fn rule(kind: &str, deny_at: FlagSeverity, report_only: bool) -> FlagKindRule {
        FlagKindRule { kind: kind.into(), deny_at: deny_at as i32, report_only }
    }

    #[test]
    fn flag_rules_merge_into_the_current_policy() {
        let current = FlagPolicy {
            deny_at: FlagSeverity::High as i32,
            kind_rules: vec![
                rule("relocated", FlagSeverity::Unspecified, true),
                rule("tpm_anomaly", FlagSeverity::Review, false),
            ],
        };
        let args =
            set(&["--deny-flags-at", "review", "--flag-rule", "relocated=high", "--flag-rule", "tpm_anomaly=default"]);
        let policy = args.flag_policy(Some(current.clone())).unwrap();
        assert_eq!(policy.deny_at, FlagSeverity::Review as i32);
        assert_eq!(policy.kind_rules, vec![rule("relocated", FlagSeverity::High, false)]);

        let cleared = set(&["--clear-flag-rules", "--flag-rule", "shared_egress=report-only"]);
        let policy = cleared.flag_policy(Some(current)).unwrap();
        assert_eq!(policy.deny_at, FlagSeverity::High as i32);
        assert_eq!(policy.kind_rules, vec![rule("shared_egress", FlagSeverity::Unspecified, true)]);
    }

    #[test]
    fn office_egress_sets_or_clears_the_list() {
        let request = set(&["--office-egress", "198.51.100.0/28, 203.0.113.9"]).to_request(None);
        assert!(request.set_office_egress_cidrs);
        assert_eq!(request.office_egress_cidrs, ["198.51.100.0/28", "203.0.113.9"]);
        let cleared = set(&["--office-egress", "none"]).to_request(None);
        assert!(cleared.set_office_egress_cidrs && cleared.office_egress_cidrs.is_empty());
        assert!(!set(&["--presence-window", "1h"]).to_request(None).set_office_egress_cidrs);
    }

    #[test]
    fn other_options_leave_the_flag_policy_alone() {
        assert_eq!(set(&["--presence-window", "1h"]).to_request(None).flag_policy, None);
    }

    #[test]
    fn malformed_rules_are_refused_with_the_fix() {
        let error = |arg: &str| Cli::try_parse_from(["policy-set", "--flag-rule", arg]).err().unwrap().to_string();
        assert!(error("relocated").contains("KIND=info|review|high|report-only|default"));
        assert!(error("relocated=sometimes").contains("report-only"));
        assert!(error("=high").contains("kind is missing"));
        let severity = Cli::try_parse_from(["policy-set", "--deny-flags-at", "critical"]).err().unwrap().to_string();
        assert!(severity.contains("use info, review or high"), "{severity}");
    }
}
