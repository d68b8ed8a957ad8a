//! An employer with a real attestation PKI, devices, tokens, and soft
//! authenticators that enroll and answer over real gRPC.

use crate::{Server, TenantKeys, authed};
use std::time::{Duration, Instant};
use tether_proto::v1 as pb;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use tonic::Status;

pub const RP_ID: &str = "tether.example";
pub const ORIGIN: &str = "https://tether.example";

/// A fixed AAGUID for the test authenticator model.
pub fn test_aaguid() -> uuid::Uuid {
    uuid::Uuid::parse_str("7e57a0e0-0000-4000-8000-000000000001").unwrap()
}

pub struct Org {
    pub keys: TenantKeys,
    pub pki: TestPki,
    pub gateway_key: String,
    pub analyst_key: String,
}

pub struct EnrolledDevice {
    pub device_id: String,
    pub credential_id: String,
    pub worker: String,
    pub auth: SoftAuthenticator,
}

impl Org {
    /// `tetherd init`, the org's attestation root in the trust store, and a
    /// gateway and an analyst key.
    pub async fn create(server: &Server, name: &str) -> Org {
        let keys = server.init_tenant(name, RP_ID, ORIGIN);
        let pki = TestPki::generate(&format!("{name} Test Authenticators")).unwrap();
        let mut admin = server.admin().await;
        admin
            .add_trust_anchors(authed(
                &keys.admin_key,
                pb::AddTrustAnchorsRequest { pem: pki.root_cert_pem.clone(), name: "test authenticator root".into() },
            ))
            .await
            .unwrap();
        let mint = |role: pb::Role| {
            let mut admin = admin.clone();
            let key = keys.admin_key.clone();
            async move {
                admin
                    .create_api_key(authed(
                        &key,
                        pb::CreateApiKeyRequest { name: String::new(), role: role as i32, ttl_seconds: 0 },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .secret
            }
        };
        let gateway_key = mint(pb::Role::Gateway).await;
        let analyst_key = mint(pb::Role::Analyst).await;
        Org { keys, pki, gateway_key, analyst_key }
    }

    /// A soft authenticator whose packed attestation chains to this org's root.
    pub fn attested_authenticator(&self) -> SoftAuthenticator {
        SoftAuthenticator::new(
            AttestationMode::Packed {
                ca_cert_pem: self.pki.intermediate_cert_pem.clone(),
                ca_key_pem: self.pki.intermediate_key_pem.clone(),
            },
            test_aaguid(),
        )
        .unwrap()
    }

    pub async fn register_device(&self, server: &Server, worker: &str, serial: &str) -> String {
        let mut admin = server.admin().await;
        admin
            .register_device(authed(
                &self.keys.admin_key,
                pb::RegisterDeviceRequest {
                    serial_number: serial.into(),
                    model: "ThinkPad T14".into(),
                    asset_tag: String::new(),
                    worker_external_id: worker.into(),
                    worker_display_name: format!("Worker {worker}"),
                    ek_pin: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    pub async fn token(&self, server: &Server, device_id: &str) -> String {
        let mut admin = server.admin().await;
        admin
            .create_enrollment_token(authed(
                &self.keys.admin_key,
                pb::CreateEnrollmentTokenRequest { device_id: device_id.into(), ttl_seconds: 0 },
            ))
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// Registers a device for `worker`, issues a token and enrolls an attested
    /// soft authenticator with it.
    pub async fn enrolled_device(&self, server: &Server, worker: &str) -> EnrolledDevice {
        let serial = format!("SN-{}", uuid::Uuid::new_v4().simple());
        let device_id = self.register_device(server, worker, &serial).await;
        let token = self.token(server, &device_id).await;
        let mut auth = self.attested_authenticator();
        let done = enroll(server, &token, &mut auth).await.unwrap();
        assert!(done.attested, "fixture enrollment must be attested: {}", done.attestation_reason);
        EnrolledDevice { device_id, credential_id: done.credential_id, worker: worker.into(), auth }
    }

    pub async fn check(&self, server: &Server, worker: &str, device_id: &str) -> pb::CheckAccessResponse {
        let mut access = server.access().await;
        access
            .check_access(authed(
                &self.gateway_key,
                pb::CheckAccessRequest {
                    worker_external_id: worker.into(),
                    device_id: device_id.into(),
                    credential_id: String::new(),
                    source_ip: "127.0.0.1".into(),
                    gateway_id: "vpn-test".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn update_policy(&self, server: &Server, update: pb::UpdatePolicyRequest) -> pb::Policy {
        let mut admin = server.admin().await;
        admin.update_policy(authed(&self.keys.admin_key, update)).await.unwrap().into_inner()
    }
}

/// Begin + make_credential + Finish, over raw gRPC.
pub async fn enroll(
    server: &Server,
    token: &str,
    auth: &mut SoftAuthenticator,
) -> Result<pb::FinishEnrollmentResponse, Status> {
    let mut client = server.enrollment().await;
    let begun = client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.into() }).await?.into_inner();
    let json = auth
        .make_credential(&begun.creation_options_json, &begun.origin)
        .map_err(|e| Status::internal(format!("soft authenticator: {e}")))?;
    client
        .finish_enrollment(pb::FinishEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token: token.into(),
            registration_response_json: json,
        })
        .await
        .map(|r| r.into_inner())
}

/// Polls until the credential has an open challenge (scheduled ones arrive
/// within a scheduler tick of enrollment).
pub async fn next_challenge(server: &Server, credential_id: &str) -> pb::PresenceChallenge {
    let mut client = server.presence().await;
    let start = Instant::now();
    loop {
        let list = client
            .poll_challenges(pb::PollChallengesRequest { credential_id: credential_id.into() })
            .await
            .unwrap()
            .into_inner()
            .challenges;
        if let Some(first) = list.into_iter().next() {
            return first;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no challenge arrived for {credential_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs the challenge's request options with the authenticator.
pub fn sign(challenge: &pb::PresenceChallenge, auth: &mut SoftAuthenticator) -> String {
    auth.get_assertion(&challenge.request_options_json, &challenge.origin).unwrap()
}

pub async fn answer_json(
    server: &Server,
    challenge_id: &str,
    json: String,
) -> Result<pb::AnswerChallengeResponse, Status> {
    let mut client = server.presence().await;
    client
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: challenge_id.into(),
            assertion_response_json: json,
            tpm_quote: None,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Signs the challenge bound to a posture report (`tether_attestation::posture`):
/// what an agent signs when it sends `posture_json` with its answer.
pub fn sign_with_posture(challenge: &pb::PresenceChallenge, auth: &mut SoftAuthenticator, posture: &[u8]) -> String {
    let bound = tether_attestation::posture::bound_challenge(&challenge.nonce, posture);
    let mut options: serde_json::Value = serde_json::from_str(&challenge.request_options_json).unwrap();
    options["challenge"] = tether_attestation::b64url_encode(&bound).into();
    auth.get_assertion(&options.to_string(), &challenge.origin).unwrap()
}

/// Answers with an assertion and a posture report.
pub async fn answer_with_posture(
    server: &Server,
    challenge_id: &str,
    json: String,
    posture: &[u8],
) -> Result<pb::AnswerChallengeResponse, Status> {
    let mut client = server.presence().await;
    client
        .answer_challenge(pb::AnswerChallengeRequest {
            challenge_id: challenge_id.into(),
            assertion_response_json: json,
            posture_json: posture.to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Waits for the next challenge and answers it correctly.
pub async fn prove_presence(server: &Server, device: &mut EnrolledDevice) -> pb::AnswerChallengeResponse {
    let challenge = next_challenge(server, &device.credential_id).await;
    let json = sign(&challenge, &mut device.auth);
    answer_json(server, &challenge.challenge_id, json).await.unwrap()
}

pub fn deny_codes(response: &pb::CheckAccessResponse) -> Vec<pb::DenyReason> {
    response.reasons.iter().map(|r| pb::DenyReason::try_from(r.code).unwrap_or(pb::DenyReason::Unspecified)).collect()
}

pub fn is_allow(response: &pb::CheckAccessResponse) -> bool {
    response.decision == pb::Decision::Allow as i32
}

/// Issues a challenge to the device now ("challenge now", admin key) and
/// returns it as the agent sees it.
pub async fn challenge_now(
    server: &Server,
    org: &Org,
    device: &EnrolledDevice,
    deadline_seconds: u64,
) -> pb::PresenceChallenge {
    let mut admin = server.admin().await;
    let ids = admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let mut presence = server.presence().await;
    presence
        .poll_challenges(pb::PollChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .challenges
        .into_iter()
        .find(|c| c.challenge_id == ids[0])
        .expect("the new challenge is pending")
}
