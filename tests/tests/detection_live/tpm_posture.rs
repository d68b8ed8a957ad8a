//! The TPM path: the quote's qualifying data is the challenge bound to the posture report.
//! Without swtpm/tpm2-tools this prints a NOTICE and returns.

use super::{HONEST, PIKVM, flags_of};
use tether_attestation::posture::bound_challenge;
use tether_e2e::fixtures::{Org, next_challenge};
use tether_e2e::swtpm::{EK_ECC, EK_ECC_CERT, Swtpm, tools_missing};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::{Code, Status};

async fn answer(
    server: &Server,
    challenge_id: &str,
    (attest, signature, pcrs): (Vec<u8>, Vec<u8>, Vec<u8>),
    posture: &str,
) -> Result<pb::AnswerChallengeResponse, Status> {
    let mut client = server.presence().await;
    let request = pb::AnswerChallengeRequest {
        challenge_id: challenge_id.into(),
        tpm_quote: Some(pb::TpmQuote { attest, signature, pcrs }),
        posture_json: posture.as_bytes().to_vec(),
        ..Default::default()
    };
    client.answer_challenge(request).await.map(|r| r.into_inner())
}

/// Enrolls an AK of `tpm` for a new device of `worker`; returns (device id, credential id).
async fn enroll(server: &Server, org: &Org, tpm: &Swtpm, worker: &str) -> (String, String) {
    let mut admin = server.admin().await;
    admin
        .add_trust_anchors(authed(
            &org.keys.admin_key,
            pb::AddTrustAnchorsRequest { pem: tpm.root_pem(), name: "swtpm local CA".into() },
        ))
        .await
        .unwrap();
    let device_id = org.register_device(server, worker, &format!("TPM-{}", uuid::Uuid::new_v4().simple())).await;
    let token = org.token(server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let mut client = server.enrollment().await;
    let begun = client
        .begin_tpm_enrollment(pb::BeginTpmEnrollmentRequest {
            token: token.clone(),
            ek_public: tpm.ek_public(EK_ECC),
            ek_certificate: tpm.ek_certificate_pem(EK_ECC_CERT),
            ak_public: tpm.read("ak.pub"),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = tpm.activate(EK_ECC, "ak", &begun.credential_blob, &begun.encrypted_secret);
    let done = client
        .finish_tpm_enrollment(pb::FinishTpmEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token,
            activated_secret: secret,
        })
        .await
        .unwrap()
        .into_inner();
    (device_id, done.credential_id)
}

#[tokio::test]
async fn a_tpm_quote_binds_the_posture_report() {
    if tools_missing("the TPM posture test") {
        return;
    }
    let tpm = Swtpm::start();
    let server = Server::start();
    let org = Org::create(&server, "tpm-acme").await;
    let (device_id, credential_id) = enroll(&server, &org, &tpm, "w-tpm-kvm").await;
    let challenge = next_challenge(&server, &credential_id).await;

    // A quote over the plain nonce with a report attached, and a quote over another report.
    let plain = tpm.quote("ak", &challenge.nonce);
    let err = answer(&server, &challenge.challenge_id, plain, HONEST).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("tampered"), "{}", err.message());
    let for_kvm = tpm.quote("ak", &bound_challenge(&challenge.nonce, PIKVM.as_bytes()));
    let err = answer(&server, &challenge.challenge_id, for_kvm.clone(), HONEST).await.unwrap_err();
    assert!(err.message().contains("tampered"), "{}", err.message());
    assert!(flags_of(&server, &org, &device_id, "remote_control").await.is_empty());

    // The quote over the report it came with counts, and the KVM is flagged.
    let answered = answer(&server, &challenge.challenge_id, for_kvm, PIKVM).await.unwrap();
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
    let flagged = flags_of(&server, &org, &device_id, "remote_control").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].severity, pb::FlagSeverity::High as i32);
}
