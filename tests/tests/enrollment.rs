//! Enrollment over real gRPC against a real tetherd process.

use tether_e2e::fixtures::{Org, enroll, test_aaguid};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Code;

#[tokio::test]
async fn attested_enrollment_binds_worker_device_and_key() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device = org.enrolled_device(&server, "w-alice").await;

    let mut admin = server.admin().await;
    let shown = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device.device_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.worker_external_id, "w-alice");
    assert_eq!(shown.attestation_state, pb::AttestationState::Attested as i32);
    let credential = &shown.credentials[0];
    assert_eq!(credential.credential_id, device.credential_id);
    assert_eq!(credential.format, "packed");
    assert_eq!(credential.attestation_type, "basic");
    assert_eq!(credential.aaguid, test_aaguid().to_string());
    assert!(credential.trust_anchor.contains("acme"), "anchor subject: {}", credential.trust_anchor);
    assert_eq!(credential.enrolled_from_ip, "127.0.0.1");
    assert!(!credential.public_key_cose.is_empty());
}

#[tokio::test]
async fn a_token_is_single_use() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device_id = org.register_device(&server, "w-bob", "SN-1").await;
    let token = org.token(&server, &device_id).await;
    let mut first = org.attested_authenticator();
    enroll(&server, &token, &mut first).await.unwrap();

    let mut second = org.attested_authenticator();
    let err = enroll(&server, &token, &mut second).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("already used"), "{}", err.message());
}

#[tokio::test]
async fn expired_revoked_and_unknown_tokens_are_rejected() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device_id = org.register_device(&server, "w-carol", "SN-2").await;
    let mut admin = server.admin().await;

    let short = admin
        .create_enrollment_token(authed(
            &org.keys.admin_key,
            pb::CreateEnrollmentTokenRequest { device_id: device_id.clone(), ttl_seconds: 1 },
        ))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let mut auth = org.attested_authenticator();
    let err = enroll(&server, &short.secret, &mut auth).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("expired"), "{}", err.message());

    let revoked = admin
        .create_enrollment_token(authed(
            &org.keys.admin_key,
            pb::CreateEnrollmentTokenRequest { device_id: device_id.clone(), ttl_seconds: 0 },
        ))
        .await
        .unwrap()
        .into_inner();
    admin
        .revoke_enrollment_token(authed(
            &org.keys.admin_key,
            pb::RevokeEnrollmentTokenRequest { id: revoked.token.unwrap().id },
        ))
        .await
        .unwrap();
    let err = enroll(&server, &revoked.secret, &mut auth).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("revoked"), "{}", err.message());

    let err = enroll(&server, "et.not-a-real-token", &mut auth).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn untrusted_root_and_self_attestation_are_rejected_by_default() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device_id = org.register_device(&server, "w-dan", "SN-3").await;
    let token = org.token(&server, &device_id).await;

    let stranger = TestPki::generate("Unknown Vendor").unwrap();
    let mut foreign = SoftAuthenticator::new(
        AttestationMode::Packed {
            ca_cert_pem: stranger.intermediate_cert_pem,
            ca_key_pem: stranger.intermediate_key_pem,
        },
        test_aaguid(),
    )
    .unwrap();
    let err = enroll(&server, &token, &mut foreign).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not hardware-attested"), "{}", err.message());

    let mut self_attested = SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap();
    let err = enroll(&server, &token, &mut self_attested).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Rejections consumed nothing: the token still enrolls a trusted authenticator.
    let mut good = org.attested_authenticator();
    let done = enroll(&server, &token, &mut good).await.unwrap();
    assert!(done.attested);
}

#[tokio::test]
async fn policy_can_admit_unattested_credentials_as_flagged() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    org.update_policy(&server, pb::UpdatePolicyRequest { allow_unattested: Some(true), ..Default::default() }).await;
    let device_id = org.register_device(&server, "w-erin", "SN-4").await;
    let token = org.token(&server, &device_id).await;
    let mut self_attested = SoftAuthenticator::new(AttestationMode::SelfAttestation, test_aaguid()).unwrap();
    let done = enroll(&server, &token, &mut self_attested).await.unwrap();
    assert!(!done.attested);
    assert_eq!(done.attestation_type, "self");
    assert!(!done.attestation_reason.is_empty());

    let mut reports = server.reports().await;
    let flags =
        reports.list_flags(authed(&org.analyst_key, pb::ListFlagsRequest::default())).await.unwrap().into_inner().flags;
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].kind, "unattested_hardware");
    assert_eq!(flags[0].device_id, device_id);
}

#[tokio::test]
async fn aaguid_allow_list_is_enforced() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    org.update_policy(
        &server,
        pb::UpdatePolicyRequest {
            set_allowed_aaguids: true,
            allowed_aaguids: vec!["00000000-0000-4000-8000-00000000beef".into()],
            ..Default::default()
        },
    )
    .await;
    let device_id = org.register_device(&server, "w-fay", "SN-5").await;
    let token = org.token(&server, &device_id).await;
    let mut auth = org.attested_authenticator();
    let err = enroll(&server, &token, &mut auth).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().to_lowercase().contains("aaguid"), "{}", err.message());
}

#[tokio::test]
async fn wrong_rp_id_and_malformed_registrations_are_invalid_and_lose_nothing() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device_id = org.register_device(&server, "w-gus", "SN-6").await;
    let token = org.token(&server, &device_id).await;
    let mut client = server.enrollment().await;

    let begun =
        client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() }).await.unwrap().into_inner();
    for garbage in ["", "{", "{\"id\":\"!!\"}", "[1,2,3]"] {
        let err = client
            .finish_enrollment(pb::FinishEnrollmentRequest {
                enrollment_id: begun.enrollment_id.clone(),
                token: token.clone(),
                registration_response_json: garbage.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{garbage:?}: {err:?}");
    }

    // An authenticator answering for another relying party.
    let mut auth = org.attested_authenticator();
    let options = begun.creation_options_json.replace("tether.example", "evil.example");
    let json = auth.make_credential(&options, "https://evil.example").unwrap();
    let err = client
        .finish_enrollment(pb::FinishEnrollmentRequest {
            enrollment_id: begun.enrollment_id.clone(),
            token: token.clone(),
            registration_response_json: json,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Nothing was bound, and the token still works.
    let mut admin = server.admin().await;
    let shown = admin
        .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id: device_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(shown.credentials.is_empty());
    let mut good = org.attested_authenticator();
    assert!(enroll(&server, &token, &mut good).await.unwrap().attested);
}

#[tokio::test]
async fn a_token_cannot_finish_another_tokens_ceremony() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let d1 = org.register_device(&server, "w-h", "SN-7").await;
    let d2 = org.register_device(&server, "w-i", "SN-8").await;
    let t1 = org.token(&server, &d1).await;
    let t2 = org.token(&server, &d2).await;
    let mut client = server.enrollment().await;
    let begun = client.begin_enrollment(pb::BeginEnrollmentRequest { token: t1 }).await.unwrap().into_inner();
    let mut auth = org.attested_authenticator();
    let json = auth.make_credential(&begun.creation_options_json, &begun.origin).unwrap();
    let err = client
        .finish_enrollment(pb::FinishEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token: t2,
            registration_response_json: json,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
