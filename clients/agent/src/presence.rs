//! Presence: answer the server's challenges with the hardware-bound key.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_proto::v1::presence_service_client::PresenceServiceClient;
use tether_proto::v1::{
    AnswerChallengeRequest, AnswerChallengeResponse, PollChallengesRequest, PresenceChallenge, WatchChallengesRequest,
};
use tonic::transport::Channel;

use crate::posture::Collector;
use crate::{AgentError, Authenticator, RPC_TIMEOUT};

/// How [`run`] learns about new challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Hold a `WatchChallenges` stream open; reconnect with backoff when it drops.
    Stream,
    /// Call `PollChallenges` every `interval`.
    Poll { interval: Duration },
}

/// Attempts per challenge before giving up on it (only transient failures,
/// such as an unreachable or busy server, are tried again).
pub const MAX_ANSWER_ATTEMPTS: u32 = 3;

/// First and largest delay before reconnecting a dropped stream.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Shortest and longest wait before answering a challenge again; challenge
/// deadlines are a minute or so, so a few tries fit.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// How answers are made.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// Collect a posture report for every answer and sign it with the answer
    /// (`None`: answers carry no posture).
    pub posture: Option<Collector>,
    /// Ask for a short-lived access token with every answer
    /// (`AnswerChallengeResponse.access_token`).
    pub request_access_token: bool,
}

/// Sign one challenge and send the answer, without a posture report. An
/// answer the server rejects (outcome FAILED, LATE, ...) is `Ok`: look at `outcome`.
pub async fn answer_challenge(
    channel: Channel,
    challenge: &PresenceChallenge,
    auth: &mut dyn Authenticator,
) -> Result<AnswerChallengeResponse, AgentError> {
    answer_challenge_with(channel, challenge, auth, None).await
}

/// Sign one challenge and send the answer with `posture_json` (when given)
/// bound into what the key signs (`tether_attestation::posture::bound_challenge`).
pub async fn answer_challenge_with(
    channel: Channel,
    challenge: &PresenceChallenge,
    auth: &mut dyn Authenticator,
    posture_json: Option<&[u8]>,
) -> Result<AnswerChallengeResponse, AgentError> {
    answer_challenge_full(channel, challenge, auth, posture_json, false).await
}

/// [`answer_challenge_with`], optionally asking for an access token.
pub async fn answer_challenge_full(
    channel: Channel,
    challenge: &PresenceChallenge,
    auth: &mut dyn Authenticator,
    posture_json: Option<&[u8]>,
    request_access_token: bool,
) -> Result<AnswerChallengeResponse, AgentError> {
    let signed = tether_attestation::posture::expected_challenge(&challenge.nonce, posture_json);
    // A TPM attestation key answers with a quote over the challenge, anything else with an assertion.
    let (assertion, tpm_quote) = match auth.tpm_quote(&signed) {
        Some(quote) => (String::new(), Some(quote?)),
        None => {
            let options = match posture_json {
                Some(_) => with_challenge(&challenge.request_options_json, &signed)?,
                None => challenge.request_options_json.clone(),
            };
            (auth.get_assertion(&options, &challenge.origin)?, None)
        }
    };
    let mut request = tonic::Request::new(AnswerChallengeRequest {
        challenge_id: challenge.challenge_id.clone(),
        assertion_response_json: assertion,
        tpm_quote,
        posture_json: posture_json.map(<[u8]>::to_vec).unwrap_or_default(),
        request_access_token,
    });
    request.set_timeout(RPC_TIMEOUT);
    let response = PresenceServiceClient::new(channel).answer_challenge(request).await?.into_inner();
    Ok(response)
}

/// The request options with their challenge replaced (base64url of `challenge`).
fn with_challenge(request_options_json: &str, challenge: &[u8]) -> Result<String, AgentError> {
    let mut options: serde_json::Value = serde_json::from_str(request_options_json)
        .map_err(|e| AgentError::Authenticator(format!("the server's request options are not JSON: {e}")))?;
    let Some(map) = options.as_object_mut() else {
        return Err(AgentError::Authenticator("the server's request options are not a JSON object".into()));
    };
    map.insert("challenge".into(), tether_attestation::b64url_encode(challenge).into());
    Ok(options.to_string())
}

/// The challenges pending for `credential_id` right now.
pub async fn poll_challenges(channel: Channel, credential_id: &str) -> Result<Vec<PresenceChallenge>, AgentError> {
    let mut request = tonic::Request::new(PollChallengesRequest { credential_id: credential_id.to_string() });
    request.set_timeout(RPC_TIMEOUT);
    let response = PresenceServiceClient::new(channel).poll_challenges(request).await?.into_inner();
    Ok(response.challenges)
}

/// One challenge and what became of its answer.
pub type AnswerResult = (PresenceChallenge, Result<AnswerChallengeResponse, AgentError>);

/// Answer everything pending now (one `PollChallenges`), once each.
/// Fails only when the poll itself fails.
pub async fn answer_pending(
    channel: Channel,
    credential_id: &str,
    auth: &mut dyn Authenticator,
) -> Result<Vec<AnswerResult>, AgentError> {
    answer_pending_with(channel, credential_id, auth, &AnswerOptions::default()).await
}

/// [`answer_pending`] with options (a posture report per answer).
pub async fn answer_pending_with(
    channel: Channel,
    credential_id: &str,
    auth: &mut dyn Authenticator,
    options: &AnswerOptions,
) -> Result<Vec<AnswerResult>, AgentError> {
    let challenges = poll_challenges(channel.clone(), credential_id).await?;
    let mut results = Vec::with_capacity(challenges.len());
    for challenge in challenges {
        if !is_ours(&challenge, credential_id) {
            continue;
        }
        let posture = options.posture.as_ref().map(Collector::collect_json);
        let result =
            answer_challenge_full(channel.clone(), &challenge, auth, posture.as_deref(), options.request_access_token)
                .await;
        log_answer(&challenge, &result);
        results.push((challenge, result));
    }
    Ok(results)
}

/// Answer every challenge for `credential_id` until `shutdown` completes.
///
/// `on_answer` sees each challenge with the result of answering it. A
/// challenge is answered once; only transient failures (server unreachable)
/// are retried, at most [`MAX_ANSWER_ATTEMPTS`] times, when the challenge is
/// delivered again (next poll, or the pending replay after a reconnect).
///
/// Shutdown is graceful: an answer being signed or sent is finished first
/// (each call is bounded by a 30 s deadline), then `Ok(())` is returned.
/// Transient errors on the watch or poll are logged and retried (with
/// backoff for the stream); a permanent one (for example NOT_FOUND, or
/// PERMISSION_DENIED for a revoked credential) ends the loop with that error.
pub async fn run<S, F>(
    channel: Channel,
    credential_id: &str,
    auth: &mut dyn Authenticator,
    mode: WatchMode,
    shutdown: S,
    on_answer: F,
) -> Result<(), AgentError>
where
    S: Future<Output = ()>,
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
{
    run_with(channel, credential_id, auth, mode, &AnswerOptions::default(), shutdown, on_answer).await
}

/// [`run`] with options (a posture report per answer).
pub async fn run_with<S, F>(
    channel: Channel,
    credential_id: &str,
    auth: &mut dyn Authenticator,
    mode: WatchMode,
    options: &AnswerOptions,
    shutdown: S,
    mut on_answer: F,
) -> Result<(), AgentError>
where
    S: Future<Output = ()>,
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
{
    let mut answerer = Answerer {
        channel,
        credential_id,
        auth,
        options,
        tracker: Tracker::default(),
        on_answer: &mut on_answer,
        shutdown: std::pin::pin!(shutdown),
    };
    match mode {
        WatchMode::Stream => watch_loop(&mut answerer).await,
        WatchMode::Poll { interval } => poll_loop(&mut answerer, interval).await,
    }
}

struct Answerer<'a, F, S> {
    channel: Channel,
    credential_id: &'a str,
    auth: &'a mut dyn Authenticator,
    options: &'a AnswerOptions,
    tracker: Tracker,
    on_answer: &'a mut F,
    shutdown: Pin<&'a mut S>,
}

impl<F, S> Answerer<'_, F, S>
where
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
    S: Future<Output = ()>,
{
    /// `work`'s output, or `None` once shutdown was requested (after which
    /// the caller returns without polling `shutdown` again).
    async fn unless_shutdown<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.shutdown.as_mut() => {
                tracing::info!("shutting down");
                None
            }
            value = work => Some(value),
        }
    }

    /// Answer one challenge. Signing and sending are not interrupted by
    /// shutdown; the wait before a retry is. A transient failure (the server
    /// busy, RESOURCE_EXHAUSTED, unreachable) is tried again here, after the
    /// server's `retry-after-ms` or a backoff, at most [`MAX_ANSWER_ATTEMPTS`]
    /// times and never past the challenge's deadline: a challenge stream does
    /// not deliver a challenge again, so waiting for that would miss it.
    /// `on_answer` sees every attempt. Returns false once shutdown was requested.
    async fn handle(&mut self, challenge: PresenceChallenge) -> bool {
        if !is_ours(&challenge, self.credential_id) {
            return true;
        }
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            if !self.tracker.begin(&challenge, now_ms()) {
                tracing::debug!(challenge_id = %challenge.challenge_id, "already handled; skipping");
                return true;
            }
            let posture = self.options.posture.as_ref().map(Collector::collect_json);
            let request_token = self.options.request_access_token;
            let auth = &mut *self.auth;
            let result =
                answer_challenge_full(self.channel.clone(), &challenge, auth, posture.as_deref(), request_token).await;
            log_answer(&challenge, &result);
            self.tracker.finish(&challenge.challenge_id, &result);
            (self.on_answer)(&challenge, &result);
            let Err(error) = &result else { return true };
            let delay = retry_delay(error, &mut backoff);
            let in_time = challenge.deadline_ms <= 0
                || now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
                    < challenge.deadline_ms;
            if !error.is_transient() || !in_time || !self.tracker.may_retry(&challenge.challenge_id) {
                return true;
            }
            tracing::info!(challenge_id = %challenge.challenge_id, delay = ?delay, "retrying the answer");
            if self.unless_shutdown(tokio::time::sleep(delay)).await.is_none() {
                return false;
            }
        }
    }
}

/// How long to wait before answering again: what the server asked for
/// (`retry-after-ms`, capped), else the next backoff step.
fn retry_delay(error: &AgentError, backoff: &mut Backoff) -> Duration {
    let asked = match error {
        AgentError::Status(status) => status
            .metadata()
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis),
        _ => None,
    };
    let step = backoff.next_delay();
    asked.map_or(step, |wait| wait.clamp(RETRY_MIN, RETRY_MAX))
}

async fn watch_loop<F, S>(answerer: &mut Answerer<'_, F, S>) -> Result<(), AgentError>
where
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
    S: Future<Output = ()>,
{
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let request = WatchChallengesRequest { credential_id: answerer.credential_id.to_string() };
        let mut client = PresenceServiceClient::new(answerer.channel.clone());
        let Some(opened) = answerer.unless_shutdown(client.watch_challenges(request)).await else {
            return Ok(());
        };
        match opened {
            Ok(response) => {
                tracing::info!(credential_id = %answerer.credential_id, "watching for challenges");
                backoff.reset();
                let mut stream = response.into_inner();
                loop {
                    let Some(message) = answerer.unless_shutdown(stream.message()).await else {
                        return Ok(());
                    };
                    match message {
                        Ok(Some(challenge)) => {
                            if !answerer.handle(challenge).await {
                                return Ok(());
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("the server closed the challenge stream");
                            break;
                        }
                        Err(status) => {
                            check_transient(status, "challenge stream")?;
                            break;
                        }
                    }
                }
            }
            Err(status) => check_transient(status, "watching challenges")?,
        }
        // Anyone who knows the credential id can hold its stream slots on the server
        // (--watch-streams-per-credential), so a refused or broken stream never means missed
        // challenges: poll once before waiting to reconnect. Polling has no such slots.
        if !poll_once(answerer).await? {
            return Ok(());
        }
        let delay = backoff.next_delay();
        tracing::info!(delay = ?delay, "reconnecting the challenge stream");
        if answerer.unless_shutdown(tokio::time::sleep(delay)).await.is_none() {
            return Ok(());
        }
    }
}

/// Answers whatever is pending now; false when the agent is to stop.
async fn poll_once<F, S>(answerer: &mut Answerer<'_, F, S>) -> Result<bool, AgentError>
where
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
    S: Future<Output = ()>,
{
    let poll = poll_challenges(answerer.channel.clone(), answerer.credential_id);
    let Some(polled) = answerer.unless_shutdown(poll).await else {
        return Ok(false);
    };
    match polled {
        Ok(challenges) => {
            for challenge in challenges {
                if !answerer.handle(challenge).await {
                    return Ok(false);
                }
            }
        }
        Err(AgentError::Status(status)) => check_transient(status, "polling challenges")?,
        Err(error) if error.is_transient() => {
            tracing::warn!(error = %error, "polling challenges failed; will retry");
        }
        Err(error) => return Err(error),
    }
    Ok(true)
}

async fn poll_loop<F, S>(answerer: &mut Answerer<'_, F, S>, interval: Duration) -> Result<(), AgentError>
where
    F: FnMut(&PresenceChallenge, &Result<AnswerChallengeResponse, AgentError>),
    S: Future<Output = ()>,
{
    tracing::info!(credential_id = %answerer.credential_id, interval = ?interval, "polling for challenges");
    loop {
        if !poll_once(answerer).await? {
            return Ok(());
        }
        if answerer.unless_shutdown(tokio::time::sleep(interval)).await.is_none() {
            return Ok(());
        }
    }
}

/// Log a transient failure, or turn a permanent one into the loop's error.
fn check_transient(status: tonic::Status, what: &str) -> Result<(), AgentError> {
    let error = AgentError::Status(status);
    if error.is_transient() {
        tracing::warn!(error = %error, "{what} failed; will retry");
        Ok(())
    } else {
        tracing::error!(error = %error, "{what} failed permanently");
        Err(error)
    }
}

fn is_ours(challenge: &PresenceChallenge, credential_id: &str) -> bool {
    if challenge.credential_id.is_empty() || challenge.credential_id == credential_id {
        true
    } else {
        tracing::warn!(
            challenge_id = %challenge.challenge_id,
            challenge_credential = %challenge.credential_id,
            "ignoring a challenge for another credential"
        );
        false
    }
}

fn log_answer(challenge: &PresenceChallenge, result: &Result<AnswerChallengeResponse, AgentError>) {
    match result {
        Ok(response) => {
            let outcome = response.outcome();
            if outcome == tether_proto::v1::PresenceOutcome::Ok {
                tracing::info!(challenge_id = %challenge.challenge_id, "presence challenge answered");
            } else {
                tracing::warn!(
                    challenge_id = %challenge.challenge_id,
                    outcome = outcome.as_str_name(),
                    "the server rejected the presence answer"
                );
            }
        }
        Err(error) => tracing::warn!(
            challenge_id = %challenge.challenge_id,
            error = %error,
            "answering the presence challenge failed"
        ),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_millis()).ok()).unwrap_or(0)
}

/// Remembered this long after a challenge's deadline, so a replay of it is skipped.
const FORGET_AFTER_MS: i64 = 60 * 60 * 1000;

#[derive(Debug)]
struct Seen {
    attempts: u32,
    done: bool,
    deadline_ms: i64,
}

/// Which challenges were answered (or given up on), so a challenge that is
/// delivered again is not answered again, and a failing one not forever.
#[derive(Debug, Default)]
struct Tracker {
    seen: HashMap<String, Seen>,
}

impl Tracker {
    /// Whether to answer `challenge` now; counts the attempt.
    fn begin(&mut self, challenge: &PresenceChallenge, now_ms: i64) -> bool {
        self.seen.retain(|_, seen| seen.deadline_ms.saturating_add(FORGET_AFTER_MS) > now_ms);
        let deadline_ms = if challenge.deadline_ms > 0 { challenge.deadline_ms } else { now_ms };
        let seen =
            self.seen.entry(challenge.challenge_id.clone()).or_insert(Seen { attempts: 0, done: false, deadline_ms });
        if seen.done || seen.attempts >= MAX_ANSWER_ATTEMPTS {
            return false;
        }
        seen.attempts += 1;
        true
    }

    /// Whether another attempt at `challenge_id` is allowed.
    fn may_retry(&self, challenge_id: &str) -> bool {
        self.seen.get(challenge_id).is_some_and(|seen| !seen.done && seen.attempts < MAX_ANSWER_ATTEMPTS)
    }

    /// Record the result: anything but a transient failure is final.
    fn finish(&mut self, challenge_id: &str, result: &Result<AnswerChallengeResponse, AgentError>) {
        if let Some(seen) = self.seen.get_mut(challenge_id) {
            seen.done = !matches!(result, Err(error) if error.is_transient());
        }
    }
}

/// Exponential backoff with a little jitter so a fleet of agents does not
/// reconnect in lockstep after a server restart.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, next: min }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let spread_ms = u64::try_from(base.as_millis() / 4).unwrap_or(0);
        let jitter_ms = if spread_ms == 0 {
            0
        } else {
            u64::from(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)) % spread_ms
        };
        base + Duration::from_millis(jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(id: &str, deadline_ms: i64) -> PresenceChallenge {
        PresenceChallenge { challenge_id: id.into(), deadline_ms, ..Default::default() }
    }

    #[test]
    fn answered_challenges_are_not_answered_again() {
        let mut tracker = Tracker::default();
        let c = challenge("c1", 10_000);
        assert!(tracker.begin(&c, 1_000));
        tracker.finish("c1", &Ok(AnswerChallengeResponse::default()));
        assert!(!tracker.begin(&c, 2_000));
    }

    #[test]
    fn permanent_failures_are_final() {
        let mut tracker = Tracker::default();
        let c = challenge("c1", 10_000);
        assert!(tracker.begin(&c, 1_000));
        tracker.finish("c1", &Err(AgentError::Authenticator("broken".into())));
        assert!(!tracker.begin(&c, 2_000));
        let c2 = challenge("c2", 10_000);
        assert!(tracker.begin(&c2, 1_000));
        tracker.finish("c2", &Err(tonic::Status::invalid_argument("bad").into()));
        assert!(!tracker.begin(&c2, 2_000));
    }

    #[test]
    fn transient_failures_are_retried_a_bounded_number_of_times() {
        let mut tracker = Tracker::default();
        let c = challenge("c1", 10_000);
        for _ in 0..MAX_ANSWER_ATTEMPTS {
            assert!(tracker.begin(&c, 1_000));
            tracker.finish("c1", &Err(tonic::Status::unavailable("down").into()));
        }
        assert!(!tracker.begin(&c, 1_000));
    }

    #[test]
    fn old_entries_are_forgotten() {
        let mut tracker = Tracker::default();
        assert!(tracker.begin(&challenge("old", 1_000), 1_000));
        tracker.finish("old", &Ok(AnswerChallengeResponse::default()));
        assert!(tracker.begin(&challenge("new", 0), 1_000 + FORGET_AFTER_MS + 1));
        assert_eq!(tracker.seen.len(), 1);
        assert!(tracker.seen.contains_key("new"));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let within = |d: Duration, base: u64| d >= Duration::from_secs(base) && d <= Duration::from_millis(base * 1250);
        assert!(within(backoff.next_delay(), 1));
        assert!(within(backoff.next_delay(), 2));
        assert!(within(backoff.next_delay(), 4));
        assert!(within(backoff.next_delay(), 4));
        backoff.reset();
        assert!(within(backoff.next_delay(), 1));
    }

    #[test]
    fn a_retry_waits_what_the_server_asked_within_bounds_else_backs_off() {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let limited = |ms: &str| {
            let mut status = tonic::Status::resource_exhausted("rate limit reached");
            status.metadata_mut().insert("retry-after-ms", ms.parse().unwrap());
            AgentError::Status(status)
        };
        assert_eq!(retry_delay(&limited("1500"), &mut backoff), Duration::from_millis(1500));
        assert_eq!(retry_delay(&limited("1"), &mut backoff), RETRY_MIN);
        assert_eq!(retry_delay(&limited("3600000"), &mut backoff), RETRY_MAX);
        let unavailable = AgentError::Status(tonic::Status::unavailable("down"));
        let waited = retry_delay(&unavailable, &mut backoff);
        assert!(waited >= RETRY_MIN * 8 && waited <= RETRY_MAX, "{waited:?}");
    }

    #[test]
    fn a_transient_failure_may_be_retried_until_the_attempts_run_out() {
        let mut tracker = Tracker::default();
        let c = challenge("c1", 10_000);
        for _ in 0..MAX_ANSWER_ATTEMPTS - 1 {
            assert!(tracker.begin(&c, 1_000));
            tracker.finish("c1", &Err(tonic::Status::resource_exhausted("busy").into()));
            assert!(tracker.may_retry("c1"));
        }
        assert!(tracker.begin(&c, 1_000));
        tracker.finish("c1", &Err(tonic::Status::resource_exhausted("busy").into()));
        assert!(!tracker.may_retry("c1"));
        let c2 = challenge("c2", 10_000);
        assert!(tracker.begin(&c2, 1_000));
        tracker.finish("c2", &Err(tonic::Status::permission_denied("revoked").into()));
        assert!(!tracker.may_retry("c2"));
    }

    #[test]
    fn challenges_for_other_credentials_are_ignored() {
        let mut c = challenge("c1", 0);
        c.credential_id = "other".into();
        assert!(!is_ours(&c, "mine"));
        c.credential_id = "mine".into();
        assert!(is_ours(&c, "mine"));
    }
}
