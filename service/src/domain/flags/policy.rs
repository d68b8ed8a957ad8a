//! A tenant's flag policy as the API shows it. The policy itself (which open
//! flags deny access) is pure and lives with the risk engine
//! (`tether_risk::policy`).

use tether_proto::v1 as pb;
use tether_risk::Severity;

pub fn severity_to_proto(severity: Severity) -> pb::FlagSeverity {
    match severity {
        Severity::Info => pb::FlagSeverity::Info,
        Severity::Review => pb::FlagSeverity::Review,
        Severity::High => pb::FlagSeverity::High,
    }
}
