//! Flags and presence failures for the tenants' SIEMs (docs/siem.md).
//!
//! Each new or reviewed flag and each presence failure is appended to the
//! outbox in the transaction that records it, so an event is delivered if and
//! only if it happened; the delivery task (`delivery.rs`) sends every
//! tenant's rows to its integrations in order, at least once.

pub mod config;
pub mod delivery;
mod format;
pub mod net;
mod syslog;
pub mod webhook;

use crate::domain::reports::{parse_evidence, redact_evidence};
use crate::store::flags::FlagRecord;
use crate::store::presence::PresenceEvent;
use crate::store::{StoreResult, Tx, outbox};
use serde_json::{Value, json};

fn flag_json(f: &FlagRecord) -> Value {
    // A cluster flag's evidence names every member, other employers' included:
    // a tenant's SIEM gets exactly what its reports show (T23 in SECURITY.md).
    let evidence = redact_evidence(&parse_evidence(&f.evidence_json), &f.tenant_id);
    json!({
        "id": f.id, "kind": f.kind, "severity": f.severity, "status": f.status,
        "device": f.device_id, "worker": f.worker_external_id, "credential": f.credential_id,
        "session": f.session_id, "raised_at_ms": f.raised_at_ms, "evidence": evidence,
    })
}

/// A flag was stored (call in the transaction that stored it).
pub async fn flag_raised(tx: &mut Tx, f: &FlagRecord) -> StoreResult<()> {
    let payload = json!({ "flag": flag_json(f) });
    outbox::append(tx, &f.tenant_id, "flag.raised", f.raised_at_ms, &payload.to_string()).await
}

/// An analyst moved a flag from `from` to its status now (call in the review's transaction).
pub async fn flag_reviewed(
    tx: &mut Tx,
    f: &FlagRecord,
    from: &str,
    by: &str,
    note: &str,
    at_ms: i64,
) -> StoreResult<()> {
    let payload = json!({ "flag": flag_json(f), "from": from, "by": by, "note": note });
    outbox::append(tx, &f.tenant_id, "flag.reviewed", at_ms, &payload.to_string()).await
}

/// A presence outcome was recorded; failures (anything but `ok`) go out.
pub async fn presence_recorded(tx: &mut Tx, e: &PresenceEvent) -> StoreResult<()> {
    if e.outcome == "ok" {
        return Ok(());
    }
    let payload = json!({
        "presence": {
            "id": e.id, "outcome": e.outcome, "device": e.device_id, "worker": e.worker_external_id,
            "credential": e.credential_id, "challenge": e.challenge_id, "at_ms": e.at_ms,
            "source_ip": e.source_ip, "detail": e.detail,
        }
    });
    outbox::append(tx, &e.tenant_id, "presence.failure", e.at_ms, &payload.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_flag_sent_to_one_tenant_names_no_other_tenants_member() {
        let evidence = json!({
            "members": [{"tenant": "t1", "worker": "w1", "device": "d1"}, {"tenant": "t2", "worker": "w9", "device": "d9"}],
        });
        let flag = FlagRecord {
            id: "flg_1".into(),
            tenant_id: "t1".into(),
            kind: "shared_egress".into(),
            severity: "high".into(),
            status: "open".into(),
            device_id: "d1".into(),
            worker_external_id: "w1".into(),
            credential_id: String::new(),
            session_id: String::new(),
            raised_at_ms: 1,
            evidence_json: evidence.to_string(),
        };
        let sent = flag_json(&flag).to_string();
        assert!(sent.contains("\"w1\"") && !sent.contains("w9") && !sent.contains("\"d9\""), "{sent}");
        assert!(sent.contains("members_other_tenants"), "{sent}");
    }
}
