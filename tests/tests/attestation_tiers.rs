//! Attestation tiers (docs/trust.md#attestation-tiers): each credential records what its
//! attestation proved, the tenant's policy says per tier allow, allow-and-flag or deny, and
//! monitor mode records tier denials as "would deny" instead of enforcing them, at enrollment
//! and at access, over real gRPC against a real tetherd.

use tether_e2e::fixtures::{EnrolledDevice, Org, deny_codes, enroll, is_allow, prove_presence, test_aaguid};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

fn tiers(self_or_none: pb::TierAction, enforcement: pb::EnforcementMode) -> pb::UpdatePolicyRequest {
    pb::UpdatePolicyRequest {
        self_or_none: Some(self_or_none as i32),
        enforcement: Some(enforcement as i32),
        ..Default::default()
    }
}

fn enforce(self_or_none: pb::TierAction) -> pb::UpdatePolicyRequest {
    tiers(self_or_none, pb::EnforcementMode::Enforce)
}

/// Registers a device for `worker` and enrolls `auth` on it.
async fn try_enroll(
    server: &Server,
    org: &Org,
    worker: &str,
    mut auth: SoftAuthenticator,
) -> (String, Result<pb::FinishEnrollmentResponse, tonic::Status>, SoftAuthenticator) {
    let device_id = org.register_device(server, worker, &format!("SN-{}", uuid::Uuid::new_v4().simple())).await;
    let token = org.token(server, &device_id).await;
    let done = enroll(server, &token, &mut auth).await;
    (device_id, done, auth)
}

fn self_attested() -> SoftAuthenticator {
    SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap()
}

/// A self-attested laptop enrolled while the tier was allowed, that has answered presence.
async fn self_attested_device(server: &Server, org: &Org, worker: &str) -> EnrolledDevice {
    org.update_policy(server, enforce(pb::TierAction::Allow)).await;
    let (device_id, done, auth) = try_enroll(server, org, worker, self_attested()).await;
    let done = done.unwrap();
    let mut device = EnrolledDevice { device_id, credential_id: done.credential_id, worker: worker.into(), auth };
    prove_presence(server, &mut device).await;
    device
}

async fn unattested_flags(server: &Server, org: &Org, device_id: &str) -> Vec<pb::Flag> {
    let request = pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() };
    let flags = server.reports().await.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == "unattested_hardware").collect()
}

async fn would_deny_sessions(server: &Server, org: &Org) -> Vec<pb::Session> {
    let request = pb::ListSessionsRequest { would_deny_only: true, ..Default::default() };
    server.reports().await.list_sessions(authed(&org.analyst_key, request)).await.unwrap().into_inner().sessions
}

/// The details of every audit entry with this action and target, oldest first.
async fn audit_details(server: &Server, org: &Org, action: &str, target: &str) -> Vec<serde_json::Value> {
    let request = pb::ListAuditLogRequest::default();
    let log = server.reports().await.list_audit_log(authed(&org.analyst_key, request)).await.unwrap().into_inner();
    let entries = log.entries.iter().filter(|e| e.action == action && e.target == target);
    entries.map(|e| serde_json::from_str(&e.details_json).unwrap()).collect()
}

fn codes(reasons: &[pb::Reason]) -> Vec<pb::DenyReason> {
    reasons.iter().map(|r| r.code()).collect()
}

#[tokio::test]
async fn each_self_or_none_action_applies_at_enrollment_and_access() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;

    // allow: enrolled, no flag, access allowed; the tier is shown with the credential.
    org.update_policy(&server, enforce(pb::TierAction::Allow)).await;
    let (plain, done, _) = try_enroll(&server, &org, "w-allow", self_attested()).await;
    let done = done.unwrap();
    assert_eq!((done.attested, done.tier()), (false, pb::AttestationTier::SelfOrNone));
    assert!(unattested_flags(&server, &org, &plain).await.is_empty(), "allow raises no flag");
    let shown = server
        .admin()
        .await
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: plain.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.credentials[0].tier(), pb::AttestationTier::SelfOrNone);

    // allow_and_flag: enrolled with one review flag naming the tier.
    org.update_policy(&server, enforce(pb::TierAction::AllowAndFlag)).await;
    let (flagged, done, _) = try_enroll(&server, &org, "w-flag", self_attested()).await;
    assert_eq!(done.unwrap().tier(), pb::AttestationTier::SelfOrNone);
    let raised = unattested_flags(&server, &org, &flagged).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].severity(), pb::FlagSeverity::Review);
    let evidence: serde_json::Value = serde_json::from_str(&raised[0].evidence_json).unwrap();
    assert_eq!(evidence["tier"], "self_or_none");

    // deny: refused, naming the tier; nothing is enrolled.
    org.update_policy(&server, enforce(pb::TierAction::Deny)).await;
    let (refused, done, _) = try_enroll(&server, &org, "w-deny", self_attested()).await;
    let err = done.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("denies the self_or_none tier"), "{}", err.message());
    assert!(unattested_flags(&server, &org, &refused).await.is_empty());

    // At access, the same actions: allow and allow_and_flag let a present device in, deny does not.
    let device = self_attested_device(&server, &org, "w-access").await;
    let decision = org.check(&server, "w-access", &device.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    org.update_policy(&server, enforce(pb::TierAction::AllowAndFlag)).await;
    let decision = org.check(&server, "w-access", &device.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    org.update_policy(&server, enforce(pb::TierAction::Deny)).await;
    let decision = org.check(&server, "w-access", &device.device_id).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::Unattested], "{:?}", decision.reasons);
    assert!(decision.reasons[0].detail.contains("self_or_none"), "{:?}", decision.reasons);
    assert!(decision.would_deny_reasons.is_empty(), "enforce mode has no would-deny");

    // A hardware-attested device is allowed whatever the lower tiers' policy.
    let mut attested = org.enrolled_device(&server, "w-hw").await;
    prove_presence(&server, &mut attested).await;
    assert!(is_allow(&org.check(&server, "w-hw", &attested.device_id).await));
}

/// A packed attestation whose chain ends at a root the tenant does not trust costs a software
/// authenticator one self-made CA, so it is self_or_none, never hardware_unverified.
#[tokio::test]
async fn an_untrusted_root_is_self_or_none_and_a_self_attested_aaguid_never_passes_the_allow_list() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let policy = pb::UpdatePolicyRequest {
        set_allowed_aaguids: true,
        allowed_aaguids: vec![test_aaguid().to_string()],
        hardware_unverified: Some(pb::TierAction::Allow as i32),
        self_or_none: Some(pb::TierAction::Deny as i32),
        ..Default::default()
    };
    org.update_policy(&server, policy).await;
    let stranger = TestPki::generate("Unknown Vendor").unwrap();
    let foreign = SoftAuthenticator::new(
        AttestationMode::Packed {
            ca_cert_pem: stranger.intermediate_cert_pem,
            ca_key_pem: stranger.intermediate_key_pem,
        },
        test_aaguid(),
    )
    .unwrap();
    let (_, done, _) = try_enroll(&server, &org, "w-foreign", foreign).await;
    let err = done.unwrap_err();
    assert!(err.message().contains("denies the self_or_none tier"), "{}", err.message());

    // Self and none attestation claim the listed AAGUID; the claim proves nothing (Keycloak
    // CVE-2026-6856 trusted it), so both stay self_or_none and are refused.
    let none = SoftAuthenticator::new(AttestationMode::None, test_aaguid()).unwrap();
    for auth in [self_attested(), none] {
        let (_, done, _) = try_enroll(&server, &org, "w-claim", auth).await;
        let err = done.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("denies the self_or_none tier"), "{}", err.message());
    }
    // Admitted as self_or_none, the claimed model still does not make it attested.
    org.update_policy(&server, enforce(pb::TierAction::Allow)).await;
    let (_, done, _) = try_enroll(&server, &org, "w-claim", self_attested()).await;
    let done = done.unwrap();
    assert_eq!((done.attested, done.tier()), (false, pb::AttestationTier::SelfOrNone));
    // The genuine listed model is hardware-attested.
    let (_, done, _) = try_enroll(&server, &org, "w-real", org.attested_authenticator()).await;
    assert_eq!(done.unwrap().tier(), pb::AttestationTier::HardwareAttested);
}

#[tokio::test]
async fn monitor_mode_allows_a_would_deny_with_its_reason_and_enforce_denies_the_next_check() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device = self_attested_device(&server, &org, "w-dora").await;
    let mut hardware = org.enrolled_device(&server, "w-hal").await;
    prove_presence(&server, &mut hardware).await;
    org.update_policy(&server, tiers(pb::TierAction::Deny, pb::EnforcementMode::Monitor)).await;

    let decision = org.check(&server, "w-dora", &device.device_id).await;
    assert!(is_allow(&decision), "monitor mode must not enforce a tier denial: {:?}", decision.reasons);
    assert!(decision.reasons.is_empty(), "{:?}", decision.reasons);
    assert_eq!(codes(&decision.would_deny_reasons), vec![pb::DenyReason::Unattested]);
    assert!(decision.would_deny_reasons[0].detail.contains("self_or_none"), "{:?}", decision.would_deny_reasons);
    let other = org.check(&server, "w-hal", &hardware.device_id).await;
    assert!(is_allow(&other) && other.would_deny_reasons.is_empty(), "{:?}", other.would_deny_reasons);

    // The report lists the would-deny session, and only it, as an ALLOW with the reason.
    let sessions = would_deny_sessions(&server, &org).await;
    assert_eq!(sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![decision.session_id.as_str()]);
    assert_eq!(sessions[0].decision(), pb::Decision::Allow);
    assert_eq!(codes(&sessions[0].would_deny_reasons), vec![pb::DenyReason::Unattested]);

    // Enrollment in monitor mode succeeds, unflagged, and is audited as a would-deny.
    let (enrolled, done, _) = try_enroll(&server, &org, "w-new", self_attested()).await;
    assert_eq!(done.unwrap().tier(), pb::AttestationTier::SelfOrNone);
    assert!(unattested_flags(&server, &org, &enrolled).await.is_empty());
    let details = audit_details(&server, &org, "device.enrolled", &enrolled).await.remove(0);
    assert_eq!(details["tier"], "self_or_none");
    assert!(details["would_deny"].as_str().unwrap_or_default().contains("denies the self_or_none tier"), "{details}");

    // Switching to enforce denies the very next check.
    org.update_policy(&server, tiers(pb::TierAction::Deny, pb::EnforcementMode::Enforce)).await;
    let decision = org.check(&server, "w-dora", &device.device_id).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::Unattested], "{:?}", decision.reasons);
    assert!(decision.would_deny_reasons.is_empty());
    assert_eq!(would_deny_sessions(&server, &org).await.len(), 1, "an enforced deny is no would-deny");
}

#[tokio::test]
async fn monitor_mode_never_softens_a_revoked_device_or_missing_presence() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device = self_attested_device(&server, &org, "w-rex").await;
    org.update_policy(&server, tiers(pb::TierAction::Allow, pb::EnforcementMode::Monitor)).await;
    let (never_present, done, _) = try_enroll(&server, &org, "w-pia", self_attested()).await;
    done.unwrap();
    org.update_policy(&server, tiers(pb::TierAction::Deny, pb::EnforcementMode::Monitor)).await;

    let revoke = pb::RevokeDeviceRequest { device_id: device.device_id.clone(), reason: "stolen".into() };
    server.admin().await.revoke_device(authed(&org.keys.admin_key, revoke)).await.unwrap();
    let decision = org.check(&server, "w-rex", &device.device_id).await;
    assert!(!is_allow(&decision), "a revoked device is denied in monitor mode too");
    assert!(deny_codes(&decision).contains(&pb::DenyReason::DeviceRevoked), "{:?}", decision.reasons);

    let decision = org.check(&server, "w-pia", &never_present).await;
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::PresenceNever], "{:?}", decision.reasons);
    assert_eq!(codes(&decision.would_deny_reasons), vec![pb::DenyReason::Unattested], "still recorded");
}

#[test]
fn the_cli_sets_tiers_and_monitor_mode_and_lists_would_deny_sessions() {
    let server = Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (org, device) = runtime.block_on(async {
        let org = Org::create(&server, "acme").await;
        let device = self_attested_device(&server, &org, "w-cli").await;
        (org, device)
    });
    let admin = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.keys.admin_key.as_str())];
    let tether = |args: &[&str], env: &[(&str, &str)]| {
        let out = run_bin("tether", &[&["--output", "json"], args].concat(), env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let policy = tether(&["policy", "set", "--self-or-none", "deny", "--enforcement", "monitor"], &admin);
    assert_eq!(policy["self_or_none"], "deny");
    assert_eq!(policy["hardware_unverified"], "deny");
    assert_eq!(policy["enforcement"], "monitor");
    assert_eq!(policy["allow_unattested"], false);
    let refused = run_bin("tether", &["policy", "set", "--self-or-none", "sometimes"], &admin);
    assert!(!refused.status.success());

    let decision = runtime.block_on(org.check(&server, "w-cli", &device.device_id));
    assert!(is_allow(&decision), "{:?}", decision.reasons);
    let analyst = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.analyst_key.as_str())];
    let report = tether(&["report", "sessions", "--would-deny"], &analyst);
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{report}");
    assert_eq!(sessions[0]["id"], decision.session_id.as_str());
    assert_eq!(sessions[0]["decision"], "allow");
    assert_eq!(sessions[0]["would_deny_reasons"][0]["code"], "unattested");
    let shown = tether(&["devices", "show", &device.device_id], &admin);
    assert_eq!(shown["credentials"][0]["tier"], "self_or_none", "{shown}");
}

#[tokio::test]
async fn tier_fields_are_validated_audited_and_allow_unattested_is_their_shorthand() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut admin = server.admin().await;
    let policy = admin.get_policy(authed(&org.analyst_key, pb::GetPolicyRequest {})).await.unwrap().into_inner();
    assert_eq!((policy.hardware_unverified(), policy.self_or_none()), (pb::TierAction::Deny, pb::TierAction::Deny));
    assert_eq!(policy.enforcement(), pb::EnforcementMode::Enforce);
    assert!(!policy.allow_unattested);

    let open = pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() };
    let policy = org.update_policy(&server, open).await;
    let both = (policy.hardware_unverified(), policy.self_or_none());
    assert_eq!(both, (pb::TierAction::AllowAndFlag, pb::TierAction::AllowAndFlag));
    assert!(policy.allow_unattested);
    // The shorthand first, then the tier named on its own.
    let mixed = pb::UpdatePolicyRequest {
        allow_unattested: Some(true),
        self_or_none: Some(pb::TierAction::Deny as i32),
        ..Default::default()
    };
    let policy = org.update_policy(&server, mixed).await;
    let both = (policy.hardware_unverified(), policy.self_or_none());
    assert_eq!(both, (pb::TierAction::AllowAndFlag, pb::TierAction::Deny));
    assert!(!policy.allow_unattested, "one denying tier: not every unattested credential may enroll");

    let bad = [
        pb::UpdatePolicyRequest { self_or_none: Some(0), ..Default::default() },
        pb::UpdatePolicyRequest { hardware_unverified: Some(9), ..Default::default() },
        pb::UpdatePolicyRequest { enforcement: Some(0), ..Default::default() },
    ];
    for request in bad {
        let status = admin.update_policy(authed(&org.keys.admin_key, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let monitor = tiers(pb::TierAction::Allow, pb::EnforcementMode::Monitor);
    let status = admin.update_policy(authed(&org.analyst_key, monitor.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let policy = admin.get_policy(authed(&org.analyst_key, pb::GetPolicyRequest {})).await.unwrap().into_inner();
    assert_eq!(policy.self_or_none(), pb::TierAction::Deny, "refused updates change nothing");

    org.update_policy(&server, monitor).await;
    let changes = audit_details(&server, &org, "policy.updated", "").await;
    let last = changes.last().expect("policy.updated audited");
    assert_eq!((&last["before"]["enforcement"], &last["after"]["enforcement"]), (&"enforce".into(), &"monitor".into()));
    assert_eq!(last["after"]["self_or_none"], "allow");
}
