//! The tenant's flag policy and office egresses in their proto form,
//! validated field by field.

use crate::domain::error::{ApiError, ApiResult};
use crate::domain::flags::policy::severity_to_proto;
use tether_proto::v1 as pb;
use tether_risk::Severity;
use tether_risk::{FlagPolicy, KindRule};

pub(super) fn to_proto(policy: &FlagPolicy) -> pb::FlagPolicy {
    pb::FlagPolicy {
        deny_at: severity_to_proto(policy.deny_at) as i32,
        kind_rules: policy
            .kinds
            .iter()
            .map(|(kind, rule)| match rule {
                KindRule::ReportOnly => pb::FlagKindRule { kind: kind.clone(), deny_at: 0, report_only: true },
                KindRule::DenyAt(severity) => pb::FlagKindRule {
                    kind: kind.clone(),
                    deny_at: severity_to_proto(*severity) as i32,
                    report_only: false,
                },
            })
            .collect(),
    }
}

pub(super) fn from_proto(p: &pb::FlagPolicy) -> ApiResult<FlagPolicy> {
    let deny_at = match pb::FlagSeverity::try_from(p.deny_at) {
        Ok(pb::FlagSeverity::Unspecified) => Severity::High,
        _ => severity("flag_policy.deny_at", p.deny_at)?,
    };
    let rules = p
        .kind_rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rule = match (r.report_only, pb::FlagSeverity::try_from(r.deny_at)) {
                (true, Ok(pb::FlagSeverity::Unspecified)) => KindRule::ReportOnly,
                (true, _) => {
                    return Err(ApiError::invalid(format!(
                        "flag_policy.kind_rules[{i}]: give deny_at or report_only, not both"
                    )));
                }
                (false, Ok(pb::FlagSeverity::Unspecified)) => {
                    return Err(ApiError::invalid(format!(
                        "flag_policy.kind_rules[{i}]: deny_at (INFO, REVIEW or HIGH) or report_only is required"
                    )));
                }
                (false, _) => KindRule::DenyAt(severity(&format!("flag_policy.kind_rules[{i}].deny_at"), r.deny_at)?),
            };
            Ok((r.kind.trim().to_string(), rule))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    FlagPolicy::new(deny_at, rules).map_err(|e| ApiError::invalid(format!("flag_policy.kind_rules: {e}")))
}

const MAX_OFFICES: usize = 64;
/// Narrower than this is an office; wider would hide the tenant's devices
/// from shared_egress across whole providers.
const WIDEST_IPV4: u8 = 16;
const WIDEST_IPV6: u8 = 32;

/// Office egress CIDRs (a bare address is one host), canonical and deduplicated.
pub(super) fn office_egress(cidrs: &[String]) -> ApiResult<Vec<ipnet::IpNet>> {
    if cidrs.len() > MAX_OFFICES {
        return Err(ApiError::invalid(format!("office_egress_cidrs: at most {MAX_OFFICES} networks")));
    }
    let mut nets = Vec::new();
    for (i, text) in cidrs.iter().enumerate() {
        let text = text.trim();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| ipnet::IpNet::from(ip.to_canonical())))
            .map_err(|_| {
                ApiError::invalid(format!("office_egress_cidrs[{i}]: {text:?} is not a CIDR such as 198.51.100.0/28"))
            })?
            .trunc();
        let widest = if net.addr().is_ipv4() { WIDEST_IPV4 } else { WIDEST_IPV6 };
        if net.prefix_len() < widest {
            return Err(ApiError::invalid(format!(
                "office_egress_cidrs[{i}]: {net} is wider than /{widest}; an office egress is a few addresses"
            )));
        }
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(nets)
}

fn severity(field: &str, value: i32) -> ApiResult<Severity> {
    match pb::FlagSeverity::try_from(value) {
        Ok(pb::FlagSeverity::Info) => Ok(Severity::Info),
        Ok(pb::FlagSeverity::Review) => Ok(Severity::Review),
        Ok(pb::FlagSeverity::High) => Ok(Severity::High),
        _ => Err(ApiError::invalid(format!("{field}: {value} is not a flag severity (INFO, REVIEW, HIGH)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str, deny_at: pb::FlagSeverity, report_only: bool) -> pb::FlagKindRule {
        pb::FlagKindRule { kind: kind.into(), deny_at: deny_at as i32, report_only }
    }

    #[test]
    fn reads_back_what_it_writes() {
        let proto = pb::FlagPolicy {
            deny_at: pb::FlagSeverity::Review as i32,
            kind_rules: vec![
                rule("relocated", pb::FlagSeverity::Unspecified, true),
                rule("shared_egress", pb::FlagSeverity::High, false),
            ],
        };
        let policy = from_proto(&proto).unwrap();
        assert_eq!(to_proto(&policy), proto);
    }

    #[test]
    fn unspecified_threshold_reads_as_high() {
        let policy = from_proto(&pb::FlagPolicy::default()).unwrap();
        assert_eq!(policy, FlagPolicy::default());
    }

    #[test]
    fn office_egresses_are_canonical_and_bounded() {
        let nets = office_egress(&["198.51.100.7/28".into(), "203.0.113.9".into(), "198.51.100.0/28".into()]).unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["198.51.100.0/28", "203.0.113.9/32"]);
        let error = office_egress(&["10.0.0.0/8".into()]).unwrap_err().to_string();
        assert!(error.contains("office_egress_cidrs[0]") && error.contains("wider than /16"), "{error}");
        let error = office_egress(&["2001:db8::/16".into()]).unwrap_err().to_string();
        assert!(error.contains("wider than /32"), "{error}");
        let error = office_egress(&["ok".into(), "office".into()]).unwrap_err().to_string();
        assert!(error.contains("office_egress_cidrs[0]") && error.contains("not a CIDR"), "{error}");
        assert!(office_egress(&vec!["192.0.2.1".to_string(); 65]).is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let bad = |p: pb::FlagPolicy| from_proto(&p).unwrap_err().to_string();
        let message = bad(pb::FlagPolicy { deny_at: 9, kind_rules: vec![] });
        assert!(message.contains("flag_policy.deny_at: 9"), "{message}");
        let message = bad(pb::FlagPolicy {
            deny_at: 0,
            kind_rules: vec![rule("relocated", pb::FlagSeverity::Unspecified, false)],
        });
        assert!(message.contains("kind_rules[0]") && message.contains("required"), "{message}");
        let message =
            bad(pb::FlagPolicy { deny_at: 0, kind_rules: vec![rule("relocated", pb::FlagSeverity::High, true)] });
        assert!(message.contains("not both"), "{message}");
        let message = bad(pb::FlagPolicy { deny_at: 0, kind_rules: vec![rule("kvm", pb::FlagSeverity::High, false)] });
        assert!(message.contains("\"kvm\" is not a flag kind") && message.contains("remote_control"), "{message}");
    }
}
