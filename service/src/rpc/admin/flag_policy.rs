//! The tenant's flag policy in its proto form, validated field by field.

use crate::error::{ApiError, ApiResult};
use crate::flag_policy::{FlagPolicy, KindRule, severity_to_proto};
use crate::risk::Severity;
use tether_proto::v1 as pb;

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
