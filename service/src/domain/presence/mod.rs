//! Presence: nonces the device's hardware key must sign, single use, with
//! deadlines; answers are verified, consumed atomically and recorded, and
//! unanswered challenges become missed-presence records.

pub mod challenge;
pub mod posture;
pub mod tpm;

use crate::domain::app::App;
use crate::domain::audit;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::limits::Kind;
use crate::domain::presence::posture::Report;
use crate::domain::risk_live::{self, Happening, Observation};
use crate::domain::siem;
use crate::store::append_queue;
use crate::store::credentials::Credential;
use crate::store::flags::FlagRecord;
use crate::store::presence::{AnswerRefused, Challenge, PresenceEvent, RecordedAnswer};
use crate::store::risk_events::Position;
use crate::store::tenants::Tenant;
use crate::store::{StoreError, Tx, credentials, flags, posture as posture_store, presence, tenants};
use crate::util::{b64url, new_id, now_ms};
use tether_attestation::assertion::{AssertionExpectation, verify_assertion, verify_signature};
use tether_attestation::client_data::parse_client_data;
use tether_attestation::cose::CredentialPublicKey;
use tether_attestation::json::{AuthenticationResponseJson, CredentialDescriptor, RequestOptionsJson};
use tether_proto::v1 as pb;

/// How many due credentials (or overdue challenges) one scheduler query returns.
const BATCH: i64 = 500;
/// Challenges committed per transaction: enough to share an `fsync`, few enough that the
/// scheduler never holds SQLite's single write turn long against access checks.
const CHALLENGES_PER_TRANSACTION: usize = 50;
/// Batches one pass may go through: 5,000 challenges (1,000/s at the default 5 s tick, a
/// million credentials at a 1 h interval three times over), so a backlog — after downtime, or
/// a population imported at once — drains over a few ticks instead of taking the writer for
/// half of every tick.
const MAX_BATCHES_PER_PASS: usize = 10;

pub async fn issue(app: &App, credential: &Credential, deadline_s: i64, reason: &str) -> ApiResult<Challenge> {
    let challenge = challenge::new_challenge(credential, deadline_s, reason, now_ms());
    presence::insert_challenge(&app.store, &challenge).await?;
    // Nobody listening is fine: agents also poll.
    let _ = app.issued.send(challenge.credential_id.clone());
    Ok(challenge)
}

/// Whether one scheduler pass may take another batch after `batches`: the last one was full,
/// fewer than [`MAX_BATCHES_PER_PASS`] ran, and half a tick has not passed (passes never overlap).
fn another_batch(app: &App, started: std::time::Instant, batches: usize, full: bool) -> bool {
    full && batches < MAX_BATCHES_PER_PASS && started.elapsed() < app.settings.scheduler_tick / 2
}

/// Issues a challenge to every active credential that is due under its tenant's schedule,
/// batch after batch while batches come back full and the pass has time left. Returns how
/// many were issued.
pub async fn issue_due(app: &App) -> ApiResult<usize> {
    let started = std::time::Instant::now();
    let mut issued = 0;
    for batch in 1.. {
        let due = presence::credentials_due(&app.store, now_ms(), BATCH).await?;
        let full = i64::try_from(due.len()).unwrap_or(i64::MAX) >= BATCH;
        let mut challenges = Vec::with_capacity(due.len());
        for (_tenant, credential_id, _device, deadline_s) in due {
            let Some(credential) = credentials::get(&app.store, &credential_id).await? else { continue };
            challenges.push(challenge::new_challenge(&credential, deadline_s, "scheduled", now_ms()));
        }
        for chunk in challenges.chunks(CHALLENGES_PER_TRANSACTION) {
            let mut tx = app.store.begin().await?;
            for challenge in chunk {
                presence::insert_challenge_in(&mut tx, challenge).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            for challenge in chunk {
                // Nobody listening is fine: agents also poll.
                let _ = app.issued.send(challenge.credential_id.clone());
            }
            issued += chunk.len();
        }
        if !another_batch(app, started, batch, full) {
            break;
        }
    }
    Ok(issued)
}

/// Turns overdue challenges into missed-presence records, each exactly once.
pub async fn sweep_missed(app: &App) -> ApiResult<usize> {
    let started = std::time::Instant::now();
    let mut missed = 0;
    for batch in 1.. {
        let (swept, full) = sweep_batch(app).await?;
        missed += swept;
        if !another_batch(app, started, batch, full) {
            break;
        }
    }
    Ok(missed)
}

/// One batch of [`sweep_missed`]: how many were recorded, and whether the batch was full.
async fn sweep_batch(app: &App) -> ApiResult<(usize, bool)> {
    let now = now_ms();
    let mut missed = 0;
    let overdue = presence::overdue(&app.store, now, BATCH).await?;
    let full = i64::try_from(overdue.len()).unwrap_or(i64::MAX) >= BATCH;
    for challenge in overdue {
        let worker = credentials::get(&app.store, &challenge.credential_id)
            .await?
            .map(|c| c.worker_external_id)
            .unwrap_or_default();
        let observation = Observation {
            tenant_id: &challenge.tenant_id,
            worker: &worker,
            device_id: &challenge.device_id,
            credential_id: &challenge.credential_id,
            session_id: "",
            ip: "",
            at_ms: now,
            what: Happening::Missed { issued_at_ms: challenge.issued_at_ms, probe: challenge.reason == "probe" },
        };
        let risk_event = risk_live::prepare(app, observation).await?;
        let marked = app
            .store
            .retrying("presence.sweep_missed", || async {
                let mut tx = app.store.begin().await?;
                if !presence::mark_missed(&mut tx, &challenge.id, now).await? {
                    return Ok(None); // another replica's sweep got there first
                }
                let event = PresenceEvent {
                    id: new_id("pev"),
                    tenant_id: challenge.tenant_id.clone(),
                    outcome: "missed".into(),
                    device_id: challenge.device_id.clone(),
                    worker_external_id: worker.clone(),
                    credential_id: challenge.credential_id.clone(),
                    challenge_id: challenge.id.clone(),
                    at_ms: now,
                    source_ip: String::new(),
                    detail: format!(
                        "no answer by the deadline ({} ms after issue)",
                        challenge.deadline_ms - challenge.issued_at_ms
                    ),
                };
                presence::insert_event(&mut tx, &event).await?;
                siem::presence_recorded(&mut tx, &event).await?;
                let position = match &risk_event {
                    Some(event) => Some(event.append(&mut tx).await?),
                    None => None,
                };
                tx.commit().await.map_err(StoreError::from)?;
                Ok::<_, StoreError>(Some(position))
            })
            .await?;
        if let Some(position) = marked {
            missed += 1;
            if let (Some(event), Some(position)) = (risk_event, position) {
                event.evaluate(app, position).await?;
            }
        }
    }
    Ok((missed, full))
}

/// A live credential, its tenant and its open challenges, for every surface
/// that shows a device what to answer (gRPC streams and polls, the web app).
pub async fn open_challenges(app: &App, credential_id: &str) -> ApiResult<(Credential, Tenant, Vec<Challenge>)> {
    let credential =
        credentials::get(&app.store, credential_id).await?.ok_or_else(|| ApiError::not_found("no such credential"))?;
    crate::telemetry::set_tenant(&credential.tenant_id);
    if credential.revoked_at_ms.is_some() {
        return Err(ApiError::denied("the credential has been revoked"));
    }
    let tenant = tenants::get(&app.store, &credential.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("credential {credential_id} names a missing tenant")))?;
    let open = presence::pending_for_credential(&app.store, credential_id, now_ms()).await?;
    Ok((credential, tenant, open))
}

pub fn to_proto(challenge: &Challenge, tenant: &Tenant) -> pb::PresenceChallenge {
    let options = RequestOptionsJson {
        challenge: b64url(&challenge.nonce),
        rp_id: tenant.policy.rp_id.clone(),
        allow_credentials: vec![CredentialDescriptor {
            type_: "public-key".into(),
            id: challenge.credential_id.clone(),
        }],
        user_verification: "required".into(),
        timeout: u64::try_from(challenge.deadline_ms - challenge.issued_at_ms).ok(),
    };
    pb::PresenceChallenge {
        challenge_id: challenge.id.clone(),
        credential_id: challenge.credential_id.clone(),
        device_id: challenge.device_id.clone(),
        nonce: challenge.nonce.clone(),
        issued_at_ms: challenge.issued_at_ms,
        deadline_ms: challenge.deadline_ms,
        request_options_json: options.to_json(),
        origin: tenant.policy.origin.clone(),
    }
}

/// Everything needed to write down a failed answer.
pub(crate) struct Attempt<'a> {
    pub(crate) challenge: &'a Challenge,
    pub(crate) credential: &'a Credential,
    pub(crate) source_ip: &'a str,
}

impl Attempt<'_> {
    pub(crate) fn event(&self, outcome: &str, detail: String, at_ms: i64) -> PresenceEvent {
        PresenceEvent {
            id: new_id("pev"),
            tenant_id: self.challenge.tenant_id.clone(),
            outcome: outcome.into(),
            device_id: self.challenge.device_id.clone(),
            worker_external_id: self.credential.worker_external_id.clone(),
            credential_id: self.credential.id.clone(),
            challenge_id: self.challenge.id.clone(),
            at_ms,
            source_ip: self.source_ip.to_string(),
            detail,
        }
    }

    /// Records the failure, then hands back the error for the caller.
    pub(crate) async fn reject(&self, app: &App, outcome: &str, error: ApiError) -> ApiError {
        let event = self.event(outcome, error.to_string(), now_ms());
        let recorded = async {
            let mut tx = app.store.begin().await?;
            presence::insert_event(&mut tx, &event).await?;
            siem::presence_recorded(&mut tx, &event).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<(), StoreError>(())
        }
        .await;
        match recorded {
            Ok(()) => error,
            Err(e) => e.into(),
        }
    }

    /// The checks every answer passes before its signature is looked at: the
    /// credential is live and the challenge is neither used nor overdue.
    /// Failures are recorded. Returns the time of the check.
    pub(crate) async fn check_open(&self, app: &App) -> ApiResult<i64> {
        if self.credential.revoked_at_ms.is_some() {
            let error = ApiError::denied("the credential has been revoked");
            return Err(self.reject(app, "failed", error).await);
        }
        if self.challenge.consumed_at_ms.is_some() {
            let error = ApiError::precondition("this challenge was already answered; challenges are single-use");
            return Err(self.reject(app, "replayed", error).await);
        }
        let now = now_ms();
        if self.challenge.missed_at_ms.is_some() || now > self.challenge.deadline_ms {
            let error = ApiError::precondition(format!(
                "the answer came {} ms after the challenge's deadline",
                now - self.challenge.deadline_ms
            ));
            return Err(self.reject(app, "late", error).await);
        }
        Ok(now)
    }

    /// A posture report that is not the one the key signed over (altered,
    /// attached or swapped after signing) is refused as tampered (recorded).
    pub(crate) async fn refuse_tampered_posture(
        &self,
        app: &App,
        signed: &[u8],
        posture: Option<&Report>,
    ) -> ApiResult<()> {
        match crate::domain::presence::posture::mismatch(&self.challenge.nonce, signed, posture) {
            Some(why) => Err(self.reject(app, "failed", ApiError::denied(why)).await),
            None => Ok(()),
        }
    }

    /// The `ok` event of a verified answer; its detail names the posture report's digest.
    fn ok_event(&self, mut detail: String, now: i64, posture: Option<&Report>) -> PresenceEvent {
        if let Some(report) = posture {
            detail.push_str(&format!("; posture sha256 {}", report.digest_hex));
        }
        self.event("ok", detail, now)
    }

    /// The successful answer's record, with its posture report (if any), in the answer's transaction.
    pub(crate) async fn record_ok(
        &self,
        tx: &mut Tx,
        detail: String,
        now: i64,
        posture: Option<&Report>,
    ) -> Result<(), StoreError> {
        let event = self.ok_event(detail, now, posture);
        presence::insert_event(tx, &event).await?;
        siem::presence_recorded(tx, &event).await?;
        if let Some(report) = posture {
            let json = String::from_utf8_lossy(&report.bytes);
            posture_store::insert(tx, &event.id, &event.tenant_id, &event.device_id, now, &report.digest_hex, &json)
                .await?;
        }
        Ok(())
    }

    /// An answer signed over an earlier challenge's nonce is a replay (recorded).
    pub(crate) async fn refuse_earlier_nonce(&self, app: &App, signed_nonce: &[u8], what: &str) -> ApiResult<()> {
        if signed_nonce != self.challenge.nonce.as_slice()
            && let Some(other) = presence::challenge_by_nonce(&app.store, signed_nonce).await?
        {
            let error = ApiError::precondition(format!(
                "the {what} was made for an earlier challenge ({}), not this one: a replay",
                other.id
            ));
            return Err(self.reject(app, "replayed", error).await);
        }
        Ok(())
    }

    /// A counter that did not move forward: consume the challenge so it cannot
    /// be retried, record the event and raise a high-severity flag.
    async fn clone_suspected(&self, app: &App, stored: i64, presented: i64) -> ApiError {
        let now = now_ms();
        let detail = format!(
            "the signature counter went backwards (stored {stored}, presented {presented}): \
             the credential may have been cloned"
        );
        let result = app.store.retrying("presence.clone_suspected", || async {
            let mut tx = app.store.begin().await?;
            if !presence::consume(&mut tx, &self.challenge.id, now).await? {
                // The same answer already succeeded through another call (a
                // duplicate submission racing on another replica): a replay,
                // not a clone.
                return Ok::<bool, StoreError>(false);
            }
            let event = self.event("clone_suspected", detail.clone(), now);
            presence::insert_event(&mut tx, &event).await?;
            siem::presence_recorded(&mut tx, &event).await?;
            let evidence = serde_json::json!({
                "stored_sign_count": stored,
                "presented_sign_count": presented,
                "challenge_id": self.challenge.id,
                "source_ip": self.source_ip,
            });
            let flag = FlagRecord {
                id: new_id("flg"),
                tenant_id: self.challenge.tenant_id.clone(),
                kind: "clone_suspected".into(),
                severity: "high".into(),
                status: "open".into(),
                device_id: self.challenge.device_id.clone(),
                worker_external_id: self.credential.worker_external_id.clone(),
                credential_id: self.credential.id.clone(),
                session_id: String::new(),
                raised_at_ms: now,
                evidence_json: evidence.to_string(),
            };
            flags::insert(&mut tx, &flag).await?;
            siem::flag_raised(&mut tx, &flag).await?;
            let details =
                serde_json::json!({"kind": "clone_suspected", "severity": "high", "credential": self.credential.id});
            audit::append(
                &mut tx,
                &self.challenge.tenant_id,
                &audit::Actor::system(),
                "flag.raised",
                &self.challenge.device_id,
                details,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(true)
        })
        .await;
        match result {
            Ok(false) => {
                let error = ApiError::precondition("this challenge was already answered; challenges are single-use");
                self.reject(app, "replayed", error).await
            }
            Ok(true) => ApiError::denied(format!("{detail}; the device has been flagged")),
            Err(e) => e.into(),
        }
    }
}

/// Why an answer's transaction rolled back instead of recording it; the
/// refusal is recorded afterwards, in its own transaction.
enum Refused {
    Replayed,
    CounterBehind,
}

/// An answer that does not prove possession of the credential's key — its
/// signature does not verify with it, or it names no challenge — is charged to
/// its sender and never recorded: anybody can send one, credential and
/// challenge ids are not secret, and the device must not pay for it (neither
/// its answer budget nor its history). Past the sender's budget the refusal
/// says so instead.
pub(crate) fn unverified(app: &App, source_ip: &str, error: ApiError) -> ApiError {
    match app.limits.check(Kind::UnverifiedAnswersPerAddress, source_ip) {
        Ok(()) => error,
        Err(limited) => limited,
    }
}

/// The challenge an answer names and its credential, for the WebAuthn and TPM answer
/// paths alike; an unknown challenge is the sender's cost ([`unverified`]).
pub(crate) async fn answered(app: &App, challenge_id: &str, source_ip: &str) -> ApiResult<(Challenge, Credential)> {
    let Some(challenge) = presence::challenge(&app.store, challenge_id.trim()).await? else {
        return Err(unverified(app, source_ip, ApiError::not_found("no such challenge")));
    };
    crate::telemetry::set_tenant(&challenge.tenant_id);
    let credential = credentials::get(&app.store, &challenge.credential_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("challenge {} names a missing credential", challenge.id)))?;
    Ok((challenge, credential))
}

/// Verifies and records an answer. Only an answer signed with the credential's
/// key counts against the device's budget and is recorded, right or wrong
/// (late, replayed, tampered posture, no user verification, counter behind);
/// anything else is [`unverified`]. With a posture report the key must have
/// signed the challenge bound to it (crate::domain::presence::posture). Returns the verification time.
pub async fn answer(
    app: &App,
    challenge_id: &str,
    assertion_json: &str,
    source_ip: &str,
    posture: Option<&Report>,
) -> ApiResult<i64> {
    let (challenge, credential) = answered(app, challenge_id, source_ip).await?;
    let tenant = tenants::get(&app.store, &challenge.tenant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("challenge {} names a missing tenant", challenge.id)))?;
    let attempt = Attempt { challenge: &challenge, credential: &credential, source_ip };
    if credential.kind == crate::domain::enrollment::tpm::KIND {
        // TPM attestation keys answer with quotes (crate::domain::presence::tpm), never assertions.
        let error = ApiError::invalid("this credential is a TPM attestation key: answer with tpm_quote");
        return Err(unverified(app, source_ip, error));
    }
    let response = match AuthenticationResponseJson::from_json(assertion_json) {
        Ok(r) => r,
        Err(e) => return Err(unverified(app, source_ip, ApiError::invalid(format!("assertion_response_json: {e}")))),
    };
    let key = CredentialPublicKey::from_cose(&credential.public_key_cose)
        .map_err(|e| StoreError::Corrupt(format!("credential {} key: {e}", credential.id)))?;
    if let Err(e) = verify_signature(&response, &key) {
        let error = ApiError::denied(format!("the presence answer was rejected: {e}"));
        return Err(unverified(app, source_ip, error));
    }
    app.limits.check(Kind::PresencePerDevice, &challenge.device_id)?;

    let now = attempt.check_open(app).await?;
    if let Ok(client_data) = parse_client_data(&response.response.client_data_json) {
        attempt.refuse_earlier_nonce(app, &client_data.challenge, "assertion").await?;
        attempt.refuse_tampered_posture(app, &client_data.challenge, posture).await?;
    }
    let signed_challenge = crate::domain::presence::posture::expected(&challenge.nonce, posture);
    let credential_id = tether_attestation::b64url_decode(&credential.id)
        .map_err(|e| StoreError::Corrupt(format!("credential id {}: {e}", credential.id)))?;
    let expectation = AssertionExpectation {
        rp_id: &tenant.policy.rp_id,
        origin: &tenant.policy.origin,
        challenge: &signed_challenge,
        require_user_verification: true,
    };
    let verify = || verify_assertion(&response, &expectation, &credential_id, &key);
    let verified = match crate::telemetry::verify(crate::telemetry::WEBAUTHN_ASSERTION, verify) {
        Ok(v) => v,
        Err(e) => {
            let error = ApiError::denied(format!("the presence answer was rejected: {e}"));
            return Err(attempt.reject(app, "failed", error).await);
        }
    };
    let presented = i64::from(verified.sign_count);
    let stored = credential.sign_count;
    if (presented != 0 || stored != 0) && presented <= stored {
        return Err(attempt.clone_suspected(app, stored, presented).await);
    }

    let detail = format!("verified; user verified: {}; sign count {presented}", verified.user_verified);
    let observation = Observation {
        tenant_id: &challenge.tenant_id,
        worker: &credential.worker_external_id,
        device_id: &challenge.device_id,
        credential_id: &credential.id,
        session_id: "",
        ip: source_ip,
        at_ms: now,
        what: Happening::Answered {
            issued_at_ms: challenge.issued_at_ms,
            sign_count: verified.sign_count,
            posture: posture.map(|p| p.posture.clone()),
        },
    };
    let risk_event = risk_live::prepare(app, observation).await?;
    let recorded = if append_queue::records_answers(&app.store) {
        record_queued(app, &attempt, detail, now, posture, presented, risk_event.as_ref()).await?
    } else {
        record_alone(app, &attempt, &detail, now, posture, presented, risk_event.as_ref()).await?
    };
    match recorded {
        Ok(position) => {
            if let (Some(event), Some(position)) = (risk_event, position) {
                event.evaluate(app, position).await?;
            }
        }
        Err(Refused::Replayed) => {
            let error = ApiError::precondition("this challenge was already answered; challenges are single-use");
            return Err(attempt.reject(app, "replayed", error).await);
        }
        Err(Refused::CounterBehind) => {
            // Another answer stored a counter at least as high in the meantime.
            let latest = credentials::get(&app.store, &credential.id).await?.map(|c| c.sign_count).unwrap_or(stored);
            return Err(attempt.clone_suspected(app, latest, presented).await);
        }
    }
    Ok(now)
}

/// Records a verified answer with other requests' queued rows, one commit for
/// them all (a SQLite file: crate::store::append_queue::record_answer). What
/// [`Attempt::record_ok`] writes, without its SIEM row: an `ok` answer has none.
async fn record_queued(
    app: &App,
    attempt: &Attempt<'_>,
    detail: String,
    now: i64,
    posture: Option<&Report>,
    presented: i64,
    risk_event: Option<&risk_live::PendingEvent>,
) -> ApiResult<Result<Option<Position>, Refused>> {
    let answer = RecordedAnswer {
        credential_id: attempt.credential.id.clone(),
        sign_count: presented,
        event: attempt.ok_event(detail, now, posture),
        posture: posture.map(|r| (r.digest_hex.clone(), String::from_utf8_lossy(&r.bytes).into_owned())),
        risk_event: risk_event.map(|e| e.row().clone()),
    };
    let recorded = append_queue::record_answer(&app.store, answer).await?;
    if recorded.is_ok() {
        crate::telemetry::record_presence("ok");
    }
    Ok(recorded.map_err(|refused| match refused {
        AnswerRefused::Replayed => Refused::Replayed,
        AnswerRefused::CounterBehind => Refused::CounterBehind,
    }))
}

/// Records a verified answer in a transaction of its own.
async fn record_alone(
    app: &App,
    attempt: &Attempt<'_>,
    detail: &str,
    now: i64,
    posture: Option<&Report>,
    presented: i64,
    risk_event: Option<&risk_live::PendingEvent>,
) -> ApiResult<Result<Option<Position>, Refused>> {
    let (challenge, credential) = (attempt.challenge, attempt.credential);
    let recorded = app
        .store
        .retrying("presence.answer", || async {
            let mut tx = app.store.begin().await?;
            if !presence::consume(&mut tx, &challenge.id, now).await? {
                return Ok(Err(Refused::Replayed));
            }
            if !credentials::record_presence(&mut tx, &credential.id, presented, now).await? {
                return Ok(Err(Refused::CounterBehind));
            }
            attempt.record_ok(&mut tx, detail.to_string(), now, posture).await?;
            let position = match risk_event {
                Some(event) => Some(event.append(&mut tx).await?),
                None => None,
            };
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(Ok(position))
        })
        .await?;
    Ok(recorded)
}
