//! TPM enrollment: BeginTpmEnrollment with the EK, its certificate chain and the AK;
//! TPM2_ActivateCredential; FinishTpmEnrollment.

use tether_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use tether_proto::v1::{BeginTpmEnrollmentRequest, FinishTpmEnrollmentRequest};
use tonic::transport::Channel;

use super::{TpmEvidence, TpmKey};
use crate::ek_chain::{self, Candidate};
use crate::{AgentError, Enrollment, RPC_TIMEOUT};

/// Where the agent looks for the EK certificate's issuers.
#[derive(Debug, Clone, Default)]
pub struct EkChainOptions {
    /// The operator's intermediates (`--ek-intermediates`, PEM).
    pub intermediates_pem: Option<String>,
    /// Fetch a missing issuer from the caIssuers URL of the certificate it issued.
    pub aia_fetch: bool,
}

/// The `ek_certificate` field: the EK certificate alone as NV holds it when no issuer is at
/// hand, else PEM with the EK certificate first and the intermediates in issuer order.
async fn ek_certificate_field(evidence: &TpmEvidence, options: &EkChainOptions) -> Result<Vec<u8>, AgentError> {
    let ek = ek_chain::first_certificate(&evidence.ek_certificate).ok_or_else(|| {
        AgentError::Authenticator("TPM: the EK certificate in NV 0x01c00002 is not a DER certificate".into())
    })?;
    let mut candidates = evidence.nv_chain.clone();
    if let Some(pem) = &options.intermediates_pem {
        let certs = ek_chain::pem_certificates(pem)
            .map_err(|e| AgentError::Authenticator(format!("--ek-intermediates: {e}")))?;
        candidates.extend(certs.into_iter().map(|der| Candidate { der, source: "--ek-intermediates".into() }));
    }
    crate::aia::complete(ek, &mut candidates, options.aia_fetch).await;
    let (intermediates, left_out) = ek_chain::select(ek, &candidates);
    for note in left_out {
        tracing::warn!("EK chain: {note}");
    }
    if intermediates.is_empty() {
        return Ok(evidence.ek_certificate.clone());
    }
    tracing::info!("EK chain: sending {} intermediate(s) after the EK certificate", intermediates.len());
    let mut pem = ek_chain::to_pem(ek);
    for der in &intermediates {
        pem.push_str(&ek_chain::to_pem(der));
    }
    Ok(pem.into_bytes())
}

/// Enroll the TPM: BeginTpmEnrollment with the EK, its certificate (followed by the
/// intermediates found in NV, given by the operator or fetched by AIA, see [`EkChainOptions`])
/// and the AK; TPM2_ActivateCredential; FinishTpmEnrollment with the recovered secret.
pub async fn enroll_tpm(
    channel: Channel,
    token: &str,
    key: &mut TpmKey,
    chain: &EkChainOptions,
) -> Result<Enrollment, AgentError> {
    let evidence = key.evidence()?;
    let ek_certificate = ek_certificate_field(&evidence, chain).await?;
    let mut client = EnrollmentServiceClient::new(channel);
    let mut begin = tonic::Request::new(BeginTpmEnrollmentRequest {
        token: token.to_string(),
        ek_public: evidence.ek_public,
        ek_certificate,
        ak_public: evidence.ak_public,
    });
    begin.set_timeout(RPC_TIMEOUT);
    let begun = client.begin_tpm_enrollment(begin).await?.into_inner();
    tracing::debug!(enrollment_id = %begun.enrollment_id, device_id = %begun.device_id, "TPM enrollment started");

    let secret = key.activate(&begun.credential_blob, &begun.encrypted_secret)?;
    let mut finish = tonic::Request::new(FinishTpmEnrollmentRequest {
        enrollment_id: begun.enrollment_id,
        token: token.to_string(),
        activated_secret: secret,
    });
    finish.set_timeout(RPC_TIMEOUT);
    let finish = client.finish_tpm_enrollment(finish).await?.into_inner();
    key.credential_id = Some(finish.credential_id.clone());
    Ok(Enrollment {
        device_id: finish.device_id,
        credential_id: finish.credential_id,
        format: finish.format,
        attestation_type: finish.attestation_type,
        attested: finish.attested,
        trust_anchor: finish.trust_anchor,
        attestation_reason: finish.attestation_reason,
        worker_external_id: begun.worker_external_id,
    })
}
