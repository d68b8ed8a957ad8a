//! Enrollment: redeem the one-time token and register the hardware key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tether_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use tether_proto::v1::{BeginEnrollmentRequest, FinishEnrollmentRequest};
use tonic::transport::Channel;

use crate::{AgentError, Authenticator, RPC_TIMEOUT};

/// What the server recorded for the new credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrollment {
    pub device_id: String,
    /// base64url credential id.
    pub credential_id: String,
    /// Attestation statement format (packed, none, ...).
    pub format: String,
    /// basic, attca, self, none, ...
    pub attestation_type: String,
    pub attested: bool,
    /// Subject of the trust anchor that verified the chain; empty when none did.
    pub trust_anchor: String,
    /// Why the credential is unattested; empty when attested.
    pub attestation_reason: String,
    /// The worker the device is assigned to (from BeginEnrollment).
    pub worker_external_id: String,
}

/// Enroll: BeginEnrollment with the token, create the credential with the
/// server's options and origin, then FinishEnrollment.
pub async fn enroll(channel: Channel, token: &str, auth: &mut dyn Authenticator) -> Result<Enrollment, AgentError> {
    let mut client = EnrollmentServiceClient::new(channel);

    let mut begin = tonic::Request::new(BeginEnrollmentRequest { token: token.to_string() });
    begin.set_timeout(RPC_TIMEOUT);
    let begin = client.begin_enrollment(begin).await?.into_inner();
    tracing::debug!(
        enrollment_id = %begin.enrollment_id,
        device_id = %begin.device_id,
        origin = %begin.origin,
        "enrollment started"
    );

    let registration = auth.make_credential(&begin.creation_options_json, &begin.origin)?;

    let mut finish = tonic::Request::new(FinishEnrollmentRequest {
        enrollment_id: begin.enrollment_id,
        token: token.to_string(),
        registration_response_json: registration,
    });
    finish.set_timeout(RPC_TIMEOUT);
    let finish = client.finish_enrollment(finish).await?.into_inner();

    if let Some(raw) = auth.credential_id() {
        let local = URL_SAFE_NO_PAD.encode(raw);
        if local != finish.credential_id {
            tracing::warn!(
                server = %finish.credential_id,
                local = %local,
                "the server recorded a different credential id than the authenticator created"
            );
        }
    }

    Ok(Enrollment {
        device_id: finish.device_id,
        credential_id: finish.credential_id,
        format: finish.format,
        attestation_type: finish.attestation_type,
        attested: finish.attested,
        trust_anchor: finish.trust_anchor,
        attestation_reason: finish.attestation_reason,
        worker_external_id: begin.worker_external_id,
    })
}
