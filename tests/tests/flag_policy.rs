//! Each employer's flag policy decides which open flags deny a gateway's
//! check and which are only reported with it (allow-and-report); the default
//! denies on high severity. Changes are validated, audited and per tenant.

use tether_e2e::fixtures::{
    EnrolledDevice, Org, answer_json, challenge_now, deny_codes, enroll, is_allow, prove_presence, sign, test_aaguid,
};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

fn open_flag(decision: &pb::CheckAccessResponse, kind: &str) -> Option<(pb::FlagSeverity, bool)> {
    decision.open_flags.iter().find(|f| f.kind == kind).map(|f| (f.severity(), f.denies))
}

fn flag_policy(deny_at: pb::FlagSeverity, rules: Vec<pb::FlagKindRule>) -> pb::UpdatePolicyRequest {
    pb::UpdatePolicyRequest {
        flag_policy: Some(pb::FlagPolicy { deny_at: deny_at as i32, kind_rules: rules }),
        ..Default::default()
    }
}

fn report_only(kind: &str) -> pb::FlagKindRule {
    pb::FlagKindRule { kind: kind.into(), deny_at: 0, report_only: true }
}

/// A self-attested laptop (an `unattested_hardware` review flag) that has
/// answered presence, in a tenant that lets unattested devices in.
async fn self_attested_device(server: &Server, org: &Org, worker: &str) -> EnrolledDevice {
    org.update_policy(server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(server, worker, &format!("SN-SELF-{worker}")).await;
    let token = org.token(server, &device_id).await;
    let mut auth = SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap();
    let enrolled = enroll(server, &token, &mut auth).await.unwrap();
    assert!(!enrolled.attested);
    let mut device = EnrolledDevice { device_id, credential_id: enrolled.credential_id, worker: worker.into(), auth };
    prove_presence(server, &mut device).await;
    device
}

#[tokio::test]
async fn review_flags_are_reported_by_default_and_deny_when_the_policy_says_so() {
    let server = Server::start();
    let acme = Org::create(&server, "acme").await;
    let globex = Org::create(&server, "globex").await;
    let dave = self_attested_device(&server, &acme, "dave").await;
    let erin = self_attested_device(&server, &globex, "erin").await;

    // Default: the review flag travels with an ALLOW.
    let decision = acme.check(&server, "dave", &dave.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    assert_eq!(open_flag(&decision, "unattested_hardware"), Some((pb::FlagSeverity::Review, false)));

    // acme denies from review up; globex keeps the default.
    let policy = acme.update_policy(&server, flag_policy(pb::FlagSeverity::Review, vec![])).await;
    assert_eq!(policy.flag_policy.as_ref().map(|p| p.deny_at()), Some(pb::FlagSeverity::Review));
    let decision = acme.check(&server, "dave", &dave.device_id).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::OpenFlags], "{:?}", decision.reasons);
    assert!(decision.reasons[0].detail.contains("unattested_hardware (review)"), "{:?}", decision.reasons);
    assert_eq!(open_flag(&decision, "unattested_hardware"), Some((pb::FlagSeverity::Review, true)));
    let other = globex.check(&server, "erin", &erin.device_id).await;
    assert!(is_allow(&other), "another tenant's policy must not apply: {:?}", other.reasons);

    // A kind rule takes that kind back to report-only; the threshold stays.
    acme.update_policy(&server, flag_policy(pb::FlagSeverity::Review, vec![report_only("unattested_hardware")])).await;
    let decision = acme.check(&server, "dave", &dave.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    assert_eq!(open_flag(&decision, "unattested_hardware"), Some((pb::FlagSeverity::Review, false)));

    // Resolved flags are neither enforced nor reported.
    let mut reports = server.reports().await;
    let flag = reports
        .list_flags(authed(
            &acme.analyst_key,
            pb::ListFlagsRequest { device_id: dave.device_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .flags
        .into_iter()
        .find(|f| f.kind == "unattested_hardware")
        .unwrap();
    reports
        .update_flag(authed(
            &acme.analyst_key,
            pb::UpdateFlagRequest {
                flag_id: flag.id,
                status: pb::FlagStatus::Resolved as i32,
                note: "known test laptop".into(),
            },
        ))
        .await
        .unwrap();
    acme.update_policy(&server, flag_policy(pb::FlagSeverity::Info, vec![])).await;
    let decision = acme.check(&server, "dave", &dave.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    assert!(decision.open_flags.is_empty(), "{:?}", decision.open_flags);
}

#[tokio::test]
async fn a_report_only_rule_lets_a_high_flag_through_and_is_audited() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    let mut clone = SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut device).await;
    let challenge = challenge_now(&server, &org, &device, 60).await;
    assert!(answer_json(&server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());

    let decision = org.check(&server, "w-alice", &device.device_id).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::OpenHighSeverityFlags], "{:?}", decision.reasons);
    assert_eq!(open_flag(&decision, "clone_suspected"), Some((pb::FlagSeverity::High, true)));

    org.update_policy(&server, flag_policy(pb::FlagSeverity::Unspecified, vec![report_only("clone_suspected")])).await;
    let decision = org.check(&server, "w-alice", &device.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    assert_eq!(open_flag(&decision, "clone_suspected"), Some((pb::FlagSeverity::High, false)));

    let log = server
        .reports()
        .await
        .list_audit_log(authed(&org.analyst_key, pb::ListAuditLogRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let change = log.iter().find(|e| e.action == "policy.updated").expect("policy.updated audited");
    let details: serde_json::Value = serde_json::from_str(&change.details_json).unwrap();
    assert_eq!(details["before"]["flag_policy"], serde_json::json!({"deny_at": "high", "kinds": {}}));
    assert_eq!(
        details["after"]["flag_policy"],
        serde_json::json!({"deny_at": "high", "kinds": {"clone_suspected": "report_only"}})
    );
}

#[tokio::test]
async fn bad_flag_policies_and_wrong_roles_are_refused_and_change_nothing() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut admin = server.admin().await;
    let refused = |rules: Vec<pb::FlagKindRule>, deny_at: i32| pb::UpdatePolicyRequest {
        flag_policy: Some(pb::FlagPolicy { deny_at, kind_rules: rules }),
        ..Default::default()
    };
    let cases = [
        (refused(vec![report_only("laptop_farm")], 0), "\"laptop_farm\" is not a flag kind"),
        (refused(vec![report_only("relocated"), report_only("relocated")], 0), "has two rules"),
        (refused(vec![], 7), "flag_policy.deny_at: 7"),
        (
            refused(vec![pb::FlagKindRule { kind: "relocated".into(), deny_at: 0, report_only: false }], 0),
            "kind_rules[0]",
        ),
    ];
    for (request, expected) in cases {
        let status = admin.update_policy(authed(&org.keys.admin_key, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(expected), "{expected:?} not in {:?}", status.message());
    }
    for key in [&org.gateway_key, &org.analyst_key] {
        let status = admin.update_policy(authed(key, flag_policy(pb::FlagSeverity::Info, vec![]))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let policy = admin.get_policy(authed(&org.analyst_key, pb::GetPolicyRequest {})).await.unwrap().into_inner();
    assert_eq!(policy.flag_policy, Some(pb::FlagPolicy { deny_at: pb::FlagSeverity::High as i32, kind_rules: vec![] }));
}

#[test]
fn the_cli_sets_the_flag_policy_rule_by_rule_and_it_survives_a_restart() {
    let mut server = Server::start();
    let keys = server.init_tenant("acme", "acme.example", "https://acme.example");
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", keys.admin_key.as_str())];
    let tether = |args: &[&str]| {
        let out = run_bin("tether", &[&["--output", "json"], args].concat(), &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    tether(&["policy", "set", "--deny-flags-at", "review", "--flag-rule", "relocated=report-only"]);
    let policy = tether(&["policy", "set", "--flag-rule", "shared_egress=high"]);
    assert_eq!(
        policy["flag_policy"],
        serde_json::json!({"deny_at": "review", "kind_rules": [
            {"kind": "relocated", "report_only": true},
            {"kind": "shared_egress", "deny_at": "high", "report_only": false}
        ]})
    );
    let refused = run_bin("tether", &["policy", "set", "--flag-rule", "relocation=high"], &env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("\"relocation\" is not a flag kind"));

    server.restart();
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", keys.admin_key.as_str())];
    let out = run_bin("tether", &["policy", "show"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("review and above; relocated: report only; shared_egress: high and above"), "{text}");
    let cleared = run_bin("tether", &["--output", "json", "policy", "set", "--clear-flag-rules"], &env);
    let cleared: serde_json::Value = serde_json::from_slice(&cleared.stdout).unwrap();
    assert_eq!(cleared["flag_policy"], serde_json::json!({"deny_at": "review", "kind_rules": []}));
}
