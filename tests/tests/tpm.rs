//! TPM 2.0 devices end to end, through a real tetherd and a real software TPM (swtpm with EK
//! certificates from its local CA, driven by tpm2-tools): enrollment with credential
//! activation, quotes as presence answers, and every rejection the design promises.
//!
//! Without swtpm/tpm2-tools these tests print a NOTICE and return (`.ci/run` installs them).

use tether_attestation::tpm::{TpmPublic, ek_pin};
use tether_e2e::fixtures::{Org, deny_codes, is_allow, next_challenge};
use tether_e2e::swtpm::{EK_ECC, EK_ECC_CERT, EK_RSA, EK_RSA_CERT, Swtpm, hex, tools_missing};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::{Code, Status};

#[path = "tpm/agent_binary.rs"]
mod agent_binary;
#[path = "tpm/ek_chain.rs"]
mod ek_chain;
#[path = "tpm/garbage.rs"]
mod garbage;
#[path = "tpm/pcr_policy.rs"]
mod pcr_policy;

/// The tenant's TPM manufacturer root: the swtpm local CA.
async fn trust_tpm_root(server: &Server, org: &Org, tpm: &Swtpm) {
    let mut admin = server.admin().await;
    admin
        .add_trust_anchors(authed(
            &org.keys.admin_key,
            pb::AddTrustAnchorsRequest { pem: tpm.root_pem(), name: "swtpm local CA (TPM manufacturer)".into() },
        ))
        .await
        .unwrap();
}

async fn register(server: &Server, org: &Org, worker: &str, ek_pin: &str) -> String {
    let mut admin = server.admin().await;
    admin
        .register_device(authed(
            &org.keys.admin_key,
            pb::RegisterDeviceRequest {
                serial_number: format!("TPM-{}", uuid::Uuid::new_v4().simple()),
                model: "ThinkPad T14 (TPM)".into(),
                asset_tag: String::new(),
                worker_external_id: worker.into(),
                worker_display_name: format!("Worker {worker}"),
                ek_pin: ek_pin.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

struct Evidence {
    ek_public: Vec<u8>,
    ek_certificate: Vec<u8>,
    ak_public: Vec<u8>,
}

fn evidence(tpm: &Swtpm, ek_handle: &str, cert_index: &str, ak: &str) -> Evidence {
    Evidence {
        ek_public: tpm.ek_public(ek_handle),
        ek_certificate: tpm.ek_certificate_pem(cert_index),
        ak_public: tpm.read(&format!("{ak}.pub")),
    }
}

async fn begin(server: &Server, token: &str, e: &Evidence) -> Result<pb::BeginTpmEnrollmentResponse, Status> {
    let mut client = server.enrollment().await;
    client
        .begin_tpm_enrollment(pb::BeginTpmEnrollmentRequest {
            token: token.into(),
            ek_public: e.ek_public.clone(),
            ek_certificate: e.ek_certificate.clone(),
            ak_public: e.ak_public.clone(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn finish(
    server: &Server,
    token: &str,
    enrollment_id: &str,
    secret: Vec<u8>,
) -> Result<pb::FinishEnrollmentResponse, Status> {
    let mut client = server.enrollment().await;
    client
        .finish_tpm_enrollment(pb::FinishTpmEnrollmentRequest {
            enrollment_id: enrollment_id.into(),
            token: token.into(),
            activated_secret: secret,
        })
        .await
        .map(|r| r.into_inner())
}

/// Begin, TPM2_ActivateCredential, Finish.
async fn enroll(
    server: &Server,
    tpm: &Swtpm,
    token: &str,
    ek_handle: &str,
    e: &Evidence,
    ak: &str,
) -> Result<pb::FinishEnrollmentResponse, Status> {
    let begun = begin(server, token, e).await?;
    let secret = tpm.activate(ek_handle, ak, &begun.credential_blob, &begun.encrypted_secret);
    finish(server, token, &begun.enrollment_id, secret).await
}

async fn answer(
    server: &Server,
    challenge_id: &str,
    (attest, signature, pcrs): (Vec<u8>, Vec<u8>, Vec<u8>),
) -> Result<pb::AnswerChallengeResponse, Status> {
    let mut client = server.presence().await;
    client
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: challenge_id.into(),
            assertion_response_json: String::new(),
            tpm_quote: Some(pb::TpmQuote { attest, signature, pcrs }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Issues a challenge now and returns it.
async fn challenge_now(server: &Server, org: &Org, device_id: &str, credential_id: &str) -> pb::PresenceChallenge {
    let mut admin = server.admin().await;
    let ids = admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device_id.into(), deadline_seconds: 0 },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let mut presence = server.presence().await;
    let pending = presence
        .poll_challenges(pb::PollChallengesRequest { credential_id: credential_id.into() })
        .await
        .unwrap()
        .into_inner()
        .challenges;
    pending.into_iter().find(|c| ids.contains(&c.challenge_id)).expect("the new challenge is pending")
}

async fn failures(server: &Server, org: &Org, device_id: &str) -> Vec<(pb::PresenceOutcome, String)> {
    let mut reports = server.reports().await;
    reports
        .list_presence_failures(authed(
            &org.analyst_key,
            pb::ListPresenceFailuresRequest { device_id: device_id.into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
        .into_iter()
        .map(|e| (pb::PresenceOutcome::try_from(e.outcome).unwrap(), e.detail))
        .collect()
}

async fn flags(server: &Server, org: &Org, device_id: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    reports
        .list_flags(authed(
            &org.analyst_key,
            pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .flags
}

async fn audit_actions(server: &Server, org: &Org) -> Vec<pb::AuditEntry> {
    let mut reports = server.reports().await;
    reports
        .list_audit_log(authed(&org.keys.admin_key, pb::ListAuditLogRequest { after_seq: 0, page_size: 5000 }))
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// The agent's chain options with the swtpm local CA's intermediate given by the operator.
#[cfg(feature = "tpm")]
fn issuer_chain(tpm: &Swtpm) -> tether_agent::tpm::EkChainOptions {
    tether_agent::tpm::EkChainOptions { intermediates_pem: Some(tpm.issuer_pem()), aia_fetch: false }
}

fn pin_of(ek_public: &[u8]) -> String {
    hex(&ek_pin(&TpmPublic::parse(ek_public).unwrap().key))
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_tpm_enrolls_with_credential_activation_and_answers_with_quotes() {
    if tools_missing("the TPM end-to-end test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-acme").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-tpm", "").await;
    let token = org.token(&server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let e = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak");

    let done = enroll(&server, &tpm, &token, EK_ECC, &e, "ak").await.unwrap();
    assert!(done.attested, "{}", done.attestation_reason);
    assert_eq!((done.format.as_str(), done.attestation_type.as_str()), ("tpm", "attca"));
    assert_eq!(done.credential_id, b64url(&tpm.read("ak.name")), "the credential id is the AK name");
    assert!(done.trust_anchor.contains("swtpm"), "{}", done.trust_anchor);
    let credential_id = done.credential_id.clone();
    let before = org.check(&server, "w-tpm", &device_id).await;
    assert_eq!(deny_codes(&before), vec![pb::DenyReason::PresenceNever]);

    // The scheduled challenge.
    let c1 = next_challenge(&server, &credential_id).await;
    // A quote over another nonce.
    let err = answer(&server, &c1.challenge_id, tpm.quote("ak", b"not the challenge nonce")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("not the challenge nonce"), "{}", err.message());
    // A quote over the right nonce by another AK of the same TPM, never activated
    // (CVE-2022-1053: the service verifies with the AK bound at enrollment only).
    tpm.create_ak(EK_ECC, "ak2");
    let err = answer(&server, &c1.challenge_id, tpm.quote("ak2", &c1.nonce)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("not signed by the registered attestation key"), "{}", err.message());
    // TPM2_Sign by the bound AK over a TPMS_ATTEST look-alike: a restricted key signs data only
    // when it does not start with TPM_GENERATED_VALUE, so the forgery lacks the magic.
    let (genuine, _, pcrs) = tpm.quote("ak", &c1.nonce);
    let mut lookalike = genuine.clone();
    lookalike[0] ^= 0x01;
    let signed = tpm.sign("ak", &lookalike);
    let err = answer(&server, &c1.challenge_id, (lookalike, signed, pcrs.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("TPM_GENERATED_VALUE"), "{}", err.message());
    // A WebAuthn-shaped answer for a TPM credential, and both kinds at once.
    let mut presence = server.presence().await;
    let err = presence
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: c1.challenge_id.clone(),
            assertion_response_json: "{}".into(),
            tpm_quote: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let err = presence
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: c1.challenge_id.clone(),
            assertion_response_json: "{}".into(),
            tpm_quote: Some(pb::TpmQuote::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    // A tampered PCR value (the first digest's first byte in the tpm2-tools memory dump).
    let good = tpm.quote("ak", &c1.nonce);
    let mut bad_pcrs = good.2.clone();
    bad_pcrs[142] ^= 0x80;
    let err = answer(&server, &c1.challenge_id, (good.0.clone(), good.1.clone(), bad_pcrs)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("PCR"), "{}", err.message());
    // No failure consumed the challenge: the genuine quote is accepted.
    let ok = answer(&server, &c1.challenge_id, good.clone()).await.unwrap();
    assert_eq!(ok.outcome, pb::PresenceOutcome::Ok as i32);
    // Single use: the same quote again.
    let err = answer(&server, &c1.challenge_id, good.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already answered"), "{}", err.message());
    let allowed = org.check(&server, "w-tpm", &device_id).await;
    assert!(is_allow(&allowed), "{:?}", allowed.reasons);
    assert_eq!(allowed.credential_id, credential_id);

    // The old quote against a fresh challenge: a replay.
    let c2 = challenge_now(&server, &org, &device_id, &credential_id).await;
    let err = answer(&server, &c2.challenge_id, good).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("earlier challenge"), "{}", err.message());
    // A fresh quote answers it; a quote without PCR values verifies too.
    let (attest, signature, _) = tpm.quote("ak", &c2.nonce);
    answer(&server, &c2.challenge_id, (attest, signature, Vec::new())).await.unwrap();

    let recorded = failures(&server, &org, &device_id).await;
    let count = |o: pb::PresenceOutcome| recorded.iter().filter(|(outcome, _)| *outcome == o).count();
    // Signed by the bound AK, so recorded: the other nonce, the TPM2_Sign look-alike, the
    // tampered PCR value. Another AK's quote and the WebAuthn-shaped answer prove nothing and
    // are not the device's doing: not recorded.
    assert_eq!(count(pb::PresenceOutcome::Failed), 3, "{recorded:?}");
    assert_eq!(count(pb::PresenceOutcome::Replayed), 2, "{recorded:?}");
    assert!(flags(&server, &org, &device_id).await.is_empty(), "no anomaly on a well-behaved TPM");
    let enrolled = audit_actions(&server, &org)
        .await
        .into_iter()
        .find(|a| a.action == "device.enrolled" && a.target == device_id)
        .expect("the enrollment is audited");
    assert!(enrolled.actor.starts_with("token:"), "{}", enrolled.actor);
    assert!(enrolled.details_json.contains("\"format\":\"tpm\""), "{}", enrolled.details_json);
}

#[tokio::test]
async fn tpm_enrollment_refuses_what_it_cannot_trust_and_consumes_nothing_then() {
    if tools_missing("the TPM enrollment rejection test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-strict").await;
    let device_id = register(&server, &org, "w-one", "").await;
    let token = org.token(&server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let e = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak");

    // An EK certificate from a CA the tenant does not trust, under the default policy.
    let err = begin(&server, &token, &e).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("not attested"), "{}", err.message());
    // No EK certificate at all.
    let bare = Evidence { ek_certificate: Vec::new(), ..evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak") };
    let err = begin(&server, &token, &bare).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    trust_tpm_root(&server, &org, &tpm).await;

    // The RSA EK's certificate with the ECC EK's public area.
    let mismatched =
        Evidence { ek_certificate: tpm.ek_certificate_pem(EK_RSA_CERT), ..evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak") };
    let err = begin(&server, &token, &mismatched).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("not the key in the EK certificate"), "{}", err.message());

    // Keys that are not AKs: an unrestricted signing key, and a restricted one not fixed to the TPM.
    for (name, attributes, missing) in [
        ("unrestricted", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "restricted"),
        ("movable", "sensitivedataorigin|userwithauth|restricted|sign", "fixedTPM"),
    ] {
        let ctx = format!("{name}.ctx");
        tpm.ok("tpm2_createprimary", &["-C", "o", "-G", "rsa2048:rsassa-sha256:null", "-c", &ctx, "-a", attributes]);
        tpm.ok("tpm2_readpublic", &["-c", &ctx, "-o", &format!("{name}.pub")]);
        tpm.flush();
        let not_ak =
            Evidence { ak_public: tpm.read(&format!("{name}.pub")), ..evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak") };
        let err = begin(&server, &token, &not_ak).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(err.message().contains(missing), "{name}: {}", err.message());
    }

    // A wrong activated secret binds nothing and consumes nothing.
    let begun = begin(&server, &token, &e).await.unwrap();
    let err = finish(&server, &token, &begun.enrollment_id, vec![7u8; 32]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // The same token, the real activation (through the RSA EK this time).
    tpm.create_ak(EK_RSA, "rak");
    let rsa = evidence(&tpm, EK_RSA, EK_RSA_CERT, "rak");
    let done = enroll(&server, &tpm, &token, EK_RSA, &rsa, "rak").await.unwrap();
    assert!(done.attested, "{}", done.attestation_reason);
    // The first ceremony cannot be finished now, even with the right secret: the token is used.
    let again = tpm.activate(EK_ECC, "ak", &begun.credential_blob, &begun.encrypted_secret);
    let err = finish(&server, &token, &begun.enrollment_id, again).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let err = begin(&server, &token, &e).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());

    // A device pinned to the RSA EK refuses the ECC EK: a different TPM.
    let pinned_device = register(&server, &org, "w-two", &pin_of(&rsa.ek_public)).await;
    let pinned_token = org.token(&server, &pinned_device).await;
    let err = begin(&server, &pinned_token, &e).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("different TPM"), "{}", err.message());
    // Pinned to the ECC EK, it enrolls (with an AK not enrolled before).
    let ecc_pin = pin_of(&e.ek_public);
    let device3 = register(&server, &org, "w-three", &ecc_pin.to_uppercase()).await;
    let token3 = org.token(&server, &device3).await;
    tpm.create_ak(EK_ECC, "ak3");
    let e3 = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak3");
    enroll(&server, &tpm, &token3, EK_ECC, &e3, "ak3").await.unwrap();
    let mut admin = server.admin().await;
    let shown = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device3.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.ek_pin, ecc_pin);
    assert_eq!(shown.attestation_state, pb::AttestationState::Attested as i32);
    // The same AK cannot be enrolled twice.
    let device4 = register(&server, &org, "w-four", "").await;
    let token4 = org.token(&server, &device4).await;
    let err = enroll(&server, &tpm, &token4, EK_ECC, &e3, "ak3").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());

    // A TPM without an EK certificate (a cloud vTPM) is hardware_unverified, not self_or_none:
    // admitting self/none attestation does not admit it.
    let tiers = pb::UpdatePolicyRequest {
        self_or_none: Some(pb::TierAction::Allow as i32),
        hardware_unverified: Some(pb::TierAction::Deny as i32),
        ..Default::default()
    };
    org.update_policy(&server, tiers).await;
    tpm.create_ak(EK_ECC, "ak5");
    let bare = Evidence { ek_certificate: Vec::new(), ..evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak5") };
    let err = enroll(&server, &tpm, &token4, EK_ECC, &bare, "ak5").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("denies the hardware_unverified tier"), "{}", err.message());
    // With allow_unattested (both tiers allow-and-flag) it enrolls unattested and is flagged.
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let done = enroll(&server, &tpm, &token4, EK_ECC, &bare, "ak5").await.unwrap();
    assert!(!done.attested);
    assert_eq!(done.tier(), pb::AttestationTier::HardwareUnverified);
    assert!(done.attestation_reason.contains("no EK certificate"), "{}", done.attestation_reason);
    let raised = flags(&server, &org, &device4).await;
    let flag = raised.iter().find(|f| f.kind == "unattested_hardware").expect("an unattested_hardware flag");
    assert!(flag.evidence_json.contains("hardware_unverified"), "the flag names the tier: {}", flag.evidence_json);
    let shown = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device4.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.credentials[0].tier(), pb::AttestationTier::HardwareUnverified);
    let attested = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device3.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attested.credentials[0].tier(), pb::AttestationTier::HardwareAttested);

    // At access the device counts at its tier: not denied for it, denied, then only recorded as
    // a would-deny in monitor mode. (One EK enrolled by several workers also raised a high
    // shared_hardware flag, and the device never answered presence: those deny throughout.)
    let unattested = |reasons: &[pb::Reason]| reasons.iter().find(|r| r.code() == pb::DenyReason::Unattested).cloned();
    let decision = org.check(&server, "w-four", &device4).await;
    assert_eq!(unattested(&decision.reasons), None, "{:?}", decision.reasons);
    let deny = pb::UpdatePolicyRequest { hardware_unverified: Some(pb::TierAction::Deny as i32), ..Default::default() };
    org.update_policy(&server, deny).await;
    let decision = org.check(&server, "w-four", &device4).await;
    let reason = unattested(&decision.reasons).expect("the tier denies");
    assert!(reason.detail.contains("hardware_unverified"), "{reason:?}");
    let monitor =
        pb::UpdatePolicyRequest { enforcement: Some(pb::EnforcementMode::Monitor as i32), ..Default::default() };
    org.update_policy(&server, monitor).await;
    let decision = org.check(&server, "w-four", &device4).await;
    assert_eq!(unattested(&decision.reasons), None, "{:?}", decision.reasons);
    assert!(unattested(&decision.would_deny_reasons).is_some(), "{:?}", decision.would_deny_reasons);
    assert!(decision.reasons.iter().any(|r| r.code() == pb::DenyReason::PresenceNever), "never softened");

    // allow: a vTPM enrolls without a flag.
    let allow = pb::UpdatePolicyRequest {
        hardware_unverified: Some(pb::TierAction::Allow as i32),
        enforcement: Some(pb::EnforcementMode::Enforce as i32),
        ..Default::default()
    };
    org.update_policy(&server, allow).await;
    let device6 = register(&server, &org, "w-six", "").await;
    let token6 = org.token(&server, &device6).await;
    tpm.create_ak(EK_ECC, "ak6");
    let bare6 = Evidence { ek_certificate: Vec::new(), ..evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak6") };
    let done = enroll(&server, &tpm, &token6, EK_ECC, &bare6, "ak6").await.unwrap();
    assert_eq!(done.tier(), pb::AttestationTier::HardwareUnverified);
    assert!(flags(&server, &org, &device6).await.iter().all(|f| f.kind != "unattested_hardware"));
}

#[tokio::test]
async fn a_tpm_whose_reset_counter_goes_backwards_is_flagged_and_denied() {
    if tools_missing("the TPM reset-counter test") {
        return;
    }
    let mut tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-farm").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-farm", "").await;
    let token = org.token(&server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let e = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak");
    let credential_id = enroll(&server, &tpm, &token, EK_ECC, &e, "ak").await.unwrap().credential_id;
    let c1 = next_challenge(&server, &credential_id).await;
    answer(&server, &c1.challenge_id, tpm.quote("ak", &c1.nonce)).await.unwrap();

    // The facilitator keeps a copy of the TPM's state, the laptop keeps working through two
    // reboots (each a TPM Reset: resetCount goes up), then the old state is put back to erase
    // what happened since — the software equivalent of clearing or swapping a TPM's history.
    tpm.stop();
    tpm.snapshot_state("snapshot");
    tpm.power_cycle();
    tpm.power_cycle();
    tpm.reload_ak("ak");
    let c2 = challenge_now(&server, &org, &device_id, &credential_id).await;
    answer(&server, &c2.challenge_id, tpm.quote("ak", &c2.nonce)).await.unwrap();
    assert!(is_allow(&org.check(&server, "w-farm", &device_id).await), "reboots alone are normal");
    assert!(flags(&server, &org, &device_id).await.is_empty());

    tpm.stop();
    tpm.restore_state("snapshot");
    tpm.power_cycle();
    tpm.reload_ak("ak");
    let c3 = challenge_now(&server, &org, &device_id, &credential_id).await;
    let err = answer(&server, &c3.challenge_id, tpm.quote("ak", &c3.nonce)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("tpm_anomaly"), "{}", err.message());
    assert!(err.message().contains("reset counter went backwards"), "{}", err.message());

    let raised = flags(&server, &org, &device_id).await;
    let flag = raised.iter().find(|f| f.kind == "tpm_anomaly").expect("a tpm_anomaly flag");
    assert_eq!(flag.severity, pb::FlagSeverity::High as i32);
    assert_eq!(flag.credential_id, credential_id);
    let evidence: serde_json::Value = serde_json::from_str(&flag.evidence_json).unwrap();
    let previous = evidence["previous"]["reset_count"].as_u64().unwrap();
    let current = evidence["current"]["reset_count"].as_u64().unwrap();
    assert!(current < previous, "{evidence}");
    assert_eq!(evidence["challenge_id"], c3.challenge_id.as_str());
    let denied = org.check(&server, "w-farm", &device_id).await;
    assert!(!is_allow(&denied));
    assert!(deny_codes(&denied).contains(&pb::DenyReason::OpenHighSeverityFlags), "{:?}", denied.reasons);
    // The challenge was consumed with the anomaly: it cannot be retried.
    let err = answer(&server, &c3.challenge_id, tpm.quote("ak", &c3.nonce)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let audit = audit_actions(&server, &org).await;
    assert!(
        audit.iter().any(|a| a.action == "flag.raised" && a.details_json.contains("tpm_anomaly")),
        "the flag is audited"
    );
    let recorded = failures(&server, &org, &device_id).await;
    assert!(recorded.iter().any(|(_, detail)| detail.contains("tpm_anomaly")), "{recorded:?}");
}

/// The agent's own TPM backend (tss-esapi), as `tether-agent enroll --tpm` and `run` use it.
#[cfg(feature = "tpm")]
#[tokio::test]
async fn the_agent_tpm_backend_enrolls_and_answers_presence_with_quotes() {
    use tether_agent::tpm::{TpmKey, enroll_tpm};
    use tether_agent::{AgentState, answer_pending};
    if tools_missing("the agent TPM backend test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-agent").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-agent", "").await;
    let token = org.token(&server, &device_id).await;

    let mut key = TpmKey::create(&tpm.tcti()).unwrap();
    let channel = tether_agent::connect(&server.url).await.unwrap();
    let enrollment = enroll_tpm(channel.clone(), &token, &mut key, &issuer_chain(&tpm)).await.unwrap();
    assert!(enrollment.attested, "{}", enrollment.attestation_reason);
    assert_eq!(enrollment.device_id, device_id);
    assert_eq!((enrollment.format.as_str(), enrollment.attestation_type.as_str()), ("tpm", "attca"));

    // The state file round trip: `tether-agent run` restores the key from it.
    let state = AgentState::from_enrollment(&server.url, &enrollment, &key).unwrap();
    assert_eq!(state.backend, "tpm");
    let mut restored = state.authenticator().unwrap();
    next_challenge(&server, &enrollment.credential_id).await;
    let answered = answer_pending(channel, &enrollment.credential_id, restored.as_mut()).await.unwrap();
    assert_eq!(answered.len(), 1);
    let outcome = answered[0].1.as_ref().unwrap().outcome;
    assert_eq!(outcome, pb::PresenceOutcome::Ok as i32, "{answered:?}");
    let allowed = org.check(&server, "w-agent", &device_id).await;
    assert!(is_allow(&allowed), "{:?}", allowed.reasons);
}

/// Activation round trips and quote answers per second through a release tetherd and swtpm,
/// for BENCHMARKS.md (`cargo build --release -p tetherd && cargo test --release -p tether-e2e
/// --features tpm --test tpm -- --ignored --nocapture`). Measures, asserts nothing about speed.
#[cfg(feature = "tpm")]
#[tokio::test]
#[ignore = "benchmark"]
async fn bench_tpm_activation_and_quote_round_trips() {
    use std::time::Instant;
    use tether_agent::tpm::{TpmKey, enroll_tpm};
    use tether_agent::{Authenticator, answer_challenge};
    if tools_missing("the TPM benchmark") {
        return;
    }
    const N: usize = 20;
    let tpm = Swtpm::start();
    let server = Server::start_with_tick("1h");
    let org = Org::create(&server, "tpm-bench").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let channel = tether_agent::connect(&server.url).await.unwrap();
    let mut enrolled = Vec::new();
    let (mut create, mut activate) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for i in 0..N {
        let device_id = register(&server, &org, &format!("w-bench-{i}"), "").await;
        let token = org.token(&server, &device_id).await;
        let t = Instant::now();
        let mut key = TpmKey::create(&tpm.tcti()).unwrap();
        create += t.elapsed();
        let t = Instant::now();
        let e = enroll_tpm(channel.clone(), &token, &mut key, &issuer_chain(&tpm)).await.unwrap();
        activate += t.elapsed();
        enrolled.push((device_id, e.credential_id, key));
    }
    let mut quote = std::time::Duration::ZERO;
    for (device_id, credential_id, key) in &mut enrolled {
        let challenge = challenge_now(&server, &org, device_id, credential_id).await;
        let t = Instant::now();
        let answered = answer_challenge(channel.clone(), &challenge, key as &mut dyn Authenticator).await.unwrap();
        quote += t.elapsed();
        assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
    }
    let per_s = |d: std::time::Duration| N as f64 / d.as_secs_f64();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / N as f64;
    println!(
        "AK creation (EK from template + TPM2_Create): {N} in {create:?}: {:.1}/s, {:.1} ms each",
        per_s(create),
        ms(create)
    );
    println!(
        "activation round trip (evidence + Begin + ActivateCredential + Finish): {N} in {activate:?}: {:.1}/s, {:.1} ms each",
        per_s(activate),
        ms(activate)
    );
    println!(
        "quote answer (EK + load AK + TPM2_Quote + AnswerChallenge): {N} in {quote:?}: {:.1}/s, {:.1} ms each",
        per_s(quote),
        ms(quote)
    );
}
