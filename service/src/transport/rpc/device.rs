//! EnrollmentService and PresenceService: the device agent's API. No API
//! key: enrollment is authorized by the one-time token, presence by the
//! hardware key's signature.

use super::peer_ip;
use crate::domain::app::App;
use crate::domain::enrollment::{self, tpm as tpm_enrollment};
use crate::domain::error::{ApiError, ApiResult, required};
use crate::domain::presence::{self, tpm as tpm_presence};
use crate::store::credentials;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use tether_proto::v1::{
    self as pb, enrollment_service_server::EnrollmentService, presence_service_server::PresenceService,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

use enrollment::limit as limit_enrollment;

pub struct EnrollmentApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    async fn begin_enrollment(
        &self,
        request: Request<pb::BeginEnrollmentRequest>,
    ) -> Reply<pb::BeginEnrollmentResponse> {
        limit_enrollment(&self.app, &peer_ip(&request), &request.get_ref().token)?;
        let begun = enrollment::begin(&self.app, &request.get_ref().token, None).await?;
        Ok(Response::new(pb::BeginEnrollmentResponse {
            enrollment_id: begun.session.id,
            creation_options_json: begun.creation_options_json,
            origin: begun.tenant.policy.origin,
            expires_at_ms: begun.session.expires_at_ms,
            device_id: begun.token.device_id,
            worker_external_id: begun.token.worker_external_id,
        }))
    }

    async fn finish_enrollment(
        &self,
        request: Request<pb::FinishEnrollmentRequest>,
    ) -> Reply<pb::FinishEnrollmentResponse> {
        let source_ip = peer_ip(&request);
        limit_enrollment(&self.app, &source_ip, &request.get_ref().token)?;
        let r = request.into_inner();
        let finish =
            enrollment::finish(&self.app, &r.enrollment_id, &r.token, &r.registration_response_json, &source_ip, None);
        let c = counted_enrollment("webauthn", finish).await?;
        Ok(Response::new(pb::FinishEnrollmentResponse {
            device_id: c.device_id,
            credential_id: c.id,
            format: c.format,
            attestation_type: c.attestation_type,
            attested: c.attested,
            trust_anchor: c.trust_anchor,
            attestation_reason: c.attestation_reason,
            tier: crate::transport::rpc::admin::tier_to_proto(c.tier) as i32,
        }))
    }

    async fn begin_tpm_enrollment(
        &self,
        request: Request<pb::BeginTpmEnrollmentRequest>,
    ) -> Reply<pb::BeginTpmEnrollmentResponse> {
        limit_enrollment(&self.app, &peer_ip(&request), &request.get_ref().token)?;
        let r = request.get_ref();
        let begun = tpm_enrollment::begin(&self.app, &r.token, &r.ek_public, &r.ek_certificate, &r.ak_public).await?;
        Ok(Response::new(pb::BeginTpmEnrollmentResponse {
            enrollment_id: begun.enrollment.id,
            credential_blob: begun.credential_blob,
            encrypted_secret: begun.encrypted_secret,
            expires_at_ms: begun.enrollment.expires_at_ms,
            device_id: begun.token.device_id,
            worker_external_id: begun.token.worker_external_id,
            credential_id: begun.enrollment.credential_id,
        }))
    }

    async fn finish_tpm_enrollment(
        &self,
        request: Request<pb::FinishTpmEnrollmentRequest>,
    ) -> Reply<pb::FinishEnrollmentResponse> {
        let source_ip = peer_ip(&request);
        limit_enrollment(&self.app, &source_ip, &request.get_ref().token)?;
        let r = request.into_inner();
        let finish = tpm_enrollment::finish(&self.app, &r.enrollment_id, &r.token, &r.activated_secret, &source_ip);
        let c = counted_enrollment("tpm", finish).await?;
        Ok(Response::new(pb::FinishEnrollmentResponse {
            device_id: c.device_id,
            credential_id: c.id,
            format: c.format,
            attestation_type: c.attestation_type,
            attested: c.attested,
            trust_anchor: c.trust_anchor,
            attestation_reason: c.attestation_reason,
            tier: crate::transport::rpc::admin::tier_to_proto(c.tier) as i32,
        }))
    }
}

pub struct PresenceApi {
    pub app: Arc<App>,
    pub streams: Arc<super::streams::StreamSlots>,
}

/// Open challenges for an active credential, as the agent sees them.
async fn pending(app: &App, credential_id: &str) -> ApiResult<Vec<pb::PresenceChallenge>> {
    let (_credential, tenant, open) = presence::open_challenges(app, credential_id).await?;
    Ok(open.iter().map(|c| presence::to_proto(c, &tenant)).collect())
}

type ChallengeStream = Pin<Box<dyn Stream<Item = Result<pb::PresenceChallenge, Status>> + Send>>;

#[tonic::async_trait]
impl PresenceService for PresenceApi {
    type WatchChallengesStream = ChallengeStream;

    async fn watch_challenges(
        &self,
        request: Request<pb::WatchChallengesRequest>,
    ) -> Reply<Self::WatchChallengesStream> {
        let credential_id = required("credential_id", &request.get_ref().credential_id)?.to_string();
        // Before any database read, so refused streams cost nothing; released when the task ends.
        let slot = self.streams.acquire(request.remote_addr(), &credential_id)?;
        // Fail before opening the stream when the credential is unknown or revoked.
        let first = pending(&self.app, &credential_id).await?;
        let (tx, rx) = mpsc::channel(16);
        let app = Arc::clone(&self.app);
        let mut issued = app.issued.subscribe();
        let mut stopping = app.stopping.subscribe();
        tokio::spawn(async move {
            let _slot = slot;
            let mut sent: HashSet<String> = HashSet::new();
            let mut batch = first;
            loop {
                for challenge in batch {
                    if sent.insert(challenge.challenge_id.clone()) && tx.send(Ok(challenge)).await.is_err() {
                        return;
                    }
                }
                // Wake on a local issue for this credential, or poll for other replicas' issues.
                let poll = tokio::time::sleep(app.settings.stream_poll);
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        // The agent reconnects, to this replica after a restart or to another.
                        _ = stopping.changed() => return,
                        _ = &mut poll => break,
                        got = issued.recv() => match got {
                            Ok(id) if id == credential_id => break,
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
                batch = match pending(&app, &credential_id).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                // Ids of challenges no longer pending cannot come back.
                let open: HashSet<&String> = batch.iter().map(|c| &c.challenge_id).collect();
                sent.retain(|id| open.contains(id));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn poll_challenges(&self, request: Request<pb::PollChallengesRequest>) -> Reply<pb::PollChallengesResponse> {
        let credential_id = required("credential_id", &request.get_ref().credential_id)?;
        Ok(Response::new(pb::PollChallengesResponse { challenges: pending(&self.app, credential_id).await? }))
    }

    async fn answer_challenge(
        &self,
        request: Request<pb::AnswerChallengeRequest>,
    ) -> Reply<pb::AnswerChallengeResponse> {
        let source_ip = peer_ip(&request);
        let r = request.into_inner();
        let challenge_id = required("challenge_id", &r.challenge_id)?;
        // The budgets (the device's, or the sender's for answers that do not verify) are the
        // domain's: which one applies depends on the signature.
        // Parsed before any signature is looked at: garbage is INVALID_ARGUMENT naming the field.
        let posture = crate::domain::presence::posture::Report::parse(&r.posture_json)?;
        if r.request_access_token {
            // Refuse before the single-use challenge is spent on an answer that cannot get a token.
            crate::domain::access::token::keys(&self.app)?;
        }
        let at = match &r.tpm_quote {
            Some(_) if !r.assertion_response_json.is_empty() => {
                return Err(ApiError::invalid("give exactly one of assertion_response_json and tpm_quote").into());
            }
            Some(quote) => tpm_presence::answer(&self.app, challenge_id, quote, &source_ip, posture.as_ref()).await?,
            None => {
                presence::answer(&self.app, challenge_id, &r.assertion_response_json, &source_ip, posture.as_ref())
                    .await?
            }
        };
        let mut response = pb::AnswerChallengeResponse {
            outcome: pb::PresenceOutcome::Ok as i32,
            verified_at_ms: at,
            ..Default::default()
        };
        if r.request_access_token {
            let (token, expires_at_ms) =
                crate::domain::access::token::issue_after_answer(&self.app, challenge_id, &source_ip).await?;
            response.access_token = token;
            response.access_token_expires_at_ms = expires_at_ms;
        }
        Ok(Response::new(response))
    }
}

/// Awaits a finishing enrollment step and counts how it ended, by key kind
/// (`webauthn`, `tpm`) and attestation format.
pub(crate) async fn counted_enrollment(
    kind: &'static str,
    finish: impl std::future::Future<Output = ApiResult<credentials::Credential>>,
) -> ApiResult<credentials::Credential> {
    use crate::telemetry::{EnrollmentOutcome, record_enrollment};
    let result = finish.await;
    let unknown = if kind == "tpm" { "tpm" } else { "unknown" };
    match &result {
        Ok(c) if c.attested => record_enrollment(kind, EnrollmentOutcome::Attested, &c.format),
        Ok(c) => record_enrollment(kind, EnrollmentOutcome::Unattested, &c.format),
        Err(ApiError::Store(_)) => record_enrollment(kind, EnrollmentOutcome::Error, unknown),
        Err(_) => record_enrollment(kind, EnrollmentOutcome::Rejected, unknown),
    }
    result
}
