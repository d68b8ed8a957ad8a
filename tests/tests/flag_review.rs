//! Analysts review flags: acknowledge, resolve, reopen, each with a note and
//! an audit entry. A resolved high flag stops denying access; an
//! acknowledged one does not.

use tether_e2e::fixtures::{Org, answer_json, deny_codes, is_allow, next_challenge, prove_presence, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

fn review(flag_id: &str, status: pb::FlagStatus, note: &str) -> pb::UpdateFlagRequest {
    pb::UpdateFlagRequest { flag_id: flag_id.into(), status: status as i32, note: note.into() }
}

#[tokio::test]
async fn resolving_a_clone_flag_restores_access_and_is_audited() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut device).await;
    // The stale copy answers the next challenge: a clone flag denies access.
    let mut admin = server.admin().await;
    admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    let challenge = next_challenge(&server, &device.credential_id).await;
    assert!(answer_json(&server, &challenge.challenge_id, sign(&challenge, &mut clone)).await.is_err());
    assert!(
        deny_codes(&org.check(&server, "w-alice", &device.device_id).await)
            .contains(&pb::DenyReason::OpenHighSeverityFlags)
    );

    let mut reports = server.reports().await;
    let flag = reports
        .list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .flags
        .into_iter()
        .find(|f| f.kind == "clone_suspected")
        .unwrap();

    // Acknowledging keeps the denial.
    let acked = reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Acknowledged, "looking into it")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.status, pb::FlagStatus::Acknowledged as i32);
    assert_eq!(acked.note, "looking into it");
    assert!(acked.updated_by.starts_with("key:"));
    assert!(!is_allow(&org.check(&server, "w-alice", &device.device_id).await));

    // Resolving lifts it (the device is present again), and the audit log tells the story.
    reports
        .update_flag(authed(
            &org.analyst_key,
            review(&flag.id, pb::FlagStatus::Resolved, "restored from backup, rotated"),
        ))
        .await
        .unwrap();
    admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap();
    prove_presence(&server, &mut device).await;
    let decision = org.check(&server, "w-alice", &device.device_id).await;
    assert!(is_allow(&decision), "{:?}", decision.reasons);

    let log = reports
        .list_audit_log(authed(&org.analyst_key, pb::ListAuditLogRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let reviews: Vec<&pb::AuditEntry> =
        log.iter().filter(|e| e.action == "flag.acknowledged" || e.action == "flag.resolved").collect();
    assert_eq!(reviews.len(), 2);
    assert!(reviews[1].details_json.contains("restored from backup"));
    assert_eq!(reviews[1].target, flag.id);

    // Reopening denies again.
    reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Open, "same key seen again")))
        .await
        .unwrap();
    assert!(!is_allow(&org.check(&server, "w-alice", &device.device_id).await));
}

#[tokio::test]
async fn flag_reviews_need_a_note_a_reader_role_and_the_right_tenant() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let other = Org::create(&server, "other").await;
    // An unattested enrollment allowed by policy raises a review flag.
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(&server, "w-bob", "SN-1").await;
    let token = org.token(&server, &device_id).await;
    let mut self_attested = tether_softkey::SoftAuthenticator::new(
        tether_softkey::AttestationMode::SelfAttestation,
        tether_e2e::fixtures::test_aaguid(),
    )
    .unwrap();
    tether_e2e::fixtures::enroll(&server, &token, &mut self_attested).await.unwrap();
    let mut reports = server.reports().await;
    let flag = reports
        .list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .flags
        .remove(0);

    let err = reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Resolved, " ")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = reports
        .update_flag(authed(&org.gateway_key, review(&flag.id, pb::FlagStatus::Resolved, "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = reports
        .update_flag(authed(&other.analyst_key, review(&flag.id, pb::FlagStatus::Resolved, "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another tenant's flag does not exist for this caller");
    let err = reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Unspecified, "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Resolved, "known test laptop")))
        .await
        .unwrap();
    let err = reports
        .update_flag(authed(&org.analyst_key, review(&flag.id, pb::FlagStatus::Resolved, "again")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let resolved = reports
        .list_flags(authed(
            &org.analyst_key,
            pb::ListFlagsRequest { status: pb::FlagStatus::Resolved as i32, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .flags;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].note, "known test laptop");
}
