//! Unit tests of the JSON and table views.

use super::*;
use serde_json::json;

use crate::output::Render;

#[test]
fn enums_render_as_lowercase_names() {
    assert_eq!(role(pb::Role::Gateway as i32), "gateway");
    assert_eq!(decision(pb::Decision::Allow as i32), "allow");
    assert_eq!(decision(pb::Decision::Deny as i32), "deny");
    assert_eq!(attestation_state(pb::AttestationState::Attested as i32), "attested");
    assert_eq!(attestation_tier(pb::AttestationTier::HardwareUnverified as i32), "hardware_unverified");
    assert_eq!(attestation_tier(pb::AttestationTier::SelfOrNone as i32), "self_or_none");
    assert_eq!(presence_outcome(pb::PresenceOutcome::Missed as i32), "missed");
    assert_eq!(presence_outcome(pb::PresenceOutcome::CloneSuspected as i32), "clone_suspected");
    assert_eq!(deny_reason(pb::DenyReason::PresenceStale as i32), "presence_stale");
    assert_eq!(flag_severity(pb::FlagSeverity::High as i32), "high");
    assert_eq!(flag_status(pb::FlagStatus::Acknowledged as i32), "acknowledged");
    assert_eq!(decision(99), "unknown(99)");
}

#[test]
fn api_key_json_has_rfc3339_times_and_nulls() {
    let view = ApiKeyView::from(pb::ApiKey {
        id: "key_1".into(),
        name: "ci".into(),
        role: pb::Role::Admin as i32,
        created_at_ms: 1_700_000_000_000,
        last_used_at_ms: 0,
        revoked_at_ms: 0,
        expires_at_ms: 1_700_000_000_000,
        pepper_id: String::new(),
    });
    assert_eq!(
        serde_json::to_value(&view).unwrap(),
        json!({
            "id": "key_1",
            "name": "ci",
            "role": "admin",
            "created_at": "2023-11-14T22:13:20Z",
            "last_used_at": null,
            "revoked_at": null,
            "expires_at": "2023-11-14T22:13:20Z",
            "pepper_id": null
        })
    );
}

#[test]
fn check_access_json() {
    let view = CheckAccessView::from(pb::CheckAccessResponse {
        decision: pb::Decision::Deny as i32,
        reasons: vec![pb::Reason { code: pb::DenyReason::DeviceNotEnrolled as i32, detail: "no credential".into() }],
        session_id: "ses_1".into(),
        device_id: "dev_1".into(),
        credential_id: String::new(),
        last_presence_at_ms: 0,
        open_flags: vec![],
        would_deny_reasons: vec![],
    });
    assert_eq!(
        serde_json::to_value(&view).unwrap(),
        json!({
            "decision": "deny",
            "reasons": [{"code": "device_not_enrolled", "detail": "no credential"}],
            "session_id": "ses_1",
            "device_id": "dev_1",
            "credential_id": "",
            "last_presence_at": null,
            "open_flags": [],
            "would_deny_reasons": []
        })
    );
    let text = view.to_text();
    assert!(text.starts_with("DENY\n  - device_not_enrolled: no credential\n"), "{text}");
    assert!(text.contains("open flags") && text.contains("none"), "{text}");
}

#[test]
fn reported_flags_show_beside_an_allow() {
    let view = CheckAccessView::from(pb::CheckAccessResponse {
        decision: pb::Decision::Allow as i32,
        open_flags: vec![pb::OpenFlag {
            kind: "relocated".into(),
            severity: pb::FlagSeverity::Review as i32,
            denies: false,
        }],
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_value(&view).unwrap()["open_flags"],
        json!([{"kind": "relocated", "severity": "review", "denies": false}])
    );
    assert!(view.to_text().contains("relocated (review, reported)"), "{}", view.to_text());
}

#[test]
fn policy_shows_which_flags_deny() {
    let view = PolicyView::from(pb::Policy {
        flag_policy: Some(pb::FlagPolicy {
            deny_at: pb::FlagSeverity::Review as i32,
            kind_rules: vec![
                pb::FlagKindRule { kind: "relocated".into(), deny_at: 0, report_only: true },
                pb::FlagKindRule {
                    kind: "shared_egress".into(),
                    deny_at: pb::FlagSeverity::High as i32,
                    report_only: false,
                },
            ],
        }),
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_value(&view).unwrap()["flag_policy"],
        json!({"deny_at": "review", "kind_rules": [
            {"kind": "relocated", "report_only": true},
            {"kind": "shared_egress", "deny_at": "high", "report_only": false}
        ]})
    );
    let text = view.to_text();
    assert!(text.contains("review and above; relocated: report only; shared_egress: high and above"), "{text}");
    let default = PolicyView::from(pb::Policy::default());
    assert_eq!(default.flag_policy.deny_at, "high");
}

#[test]
fn flag_evidence_is_embedded_json() {
    let flag = |evidence: &str| {
        serde_json::to_value(FlagView::from(pb::Flag {
            id: "flg_1".into(),
            kind: "clone_suspected".into(),
            severity: pb::FlagSeverity::High as i32,
            status: pb::FlagStatus::Open as i32,
            evidence_json: evidence.into(),
            ..Default::default()
        }))
        .unwrap()
    };
    let v = flag(r#"{"sign_count": 3}"#);
    assert_eq!(v["evidence"], json!({"sign_count": 3}));
    assert_eq!(v["severity"], "high");
    assert_eq!(v["status"], "open");
    assert_eq!(v["raised_at"], serde_json::Value::Null);
    assert_eq!(flag("not json")["evidence"], "not json");
    assert_eq!(flag("")["evidence"], serde_json::Value::Null);
}

#[test]
fn paged_lists_keep_the_wrapper_and_token() {
    let view = SessionsView { sessions: vec![], next_page_token: page_token("abc".into()) };
    assert_eq!(serde_json::to_value(&view).unwrap(), json!({"sessions": [], "next_page_token": "abc"}));
    assert!(view.to_text().contains("--page-token abc"));
    assert_eq!(page_token(String::new()), None);
}

#[test]
fn device_table_counts_active_credentials() {
    let device = pb::Device {
        id: "dev_1".into(),
        serial_number: "SN1".into(),
        credentials: vec![
            pb::Credential { credential_id: "c1".into(), ..Default::default() },
            pb::Credential { credential_id: "c0".into(), revoked_at_ms: 1, ..Default::default() },
        ],
        ..Default::default()
    };
    let view = DevicesView { devices: vec![device.clone().into()], next_page_token: None };
    let text = view.to_text();
    let row = text.lines().nth(1).unwrap();
    assert!(row.starts_with("dev_1  SN1"), "{text}");
    assert!(row.contains("  1  "), "{text}");
    let shown = DeviceView::from(device).to_text();
    assert!(shown.contains("c1") && shown.contains("c0"), "{shown}");
}

#[test]
fn credential_public_key_is_base64url() {
    let view = CredentialView::from(pb::Credential { public_key_cose: vec![0xfb, 0xff], ..Default::default() });
    assert_eq!(view.public_key_cose, "-_8");
}

#[test]
fn secrets_are_printed_with_a_warning() {
    let text = CreateApiKeyView { key: None, secret: "tk_secret".into() }.to_text();
    assert!(text.contains("tk_secret") && text.contains("shown only once"), "{text}");
}
