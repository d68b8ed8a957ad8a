//! The agent library against an in-process fake tetherd (loopback only):
//! enrollment, answering, the stream and poll loops, retries and shutdown.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_agent::{AgentError, AgentState, Authenticator, MAX_ANSWER_ATTEMPTS, PersistingAuthenticator, WatchMode};
use tether_proto::v1::enrollment_service_server::{EnrollmentService, EnrollmentServiceServer};
use tether_proto::v1::presence_service_server::{PresenceService, PresenceServiceServer};
use tether_proto::v1::{
    AnswerChallengeRequest, AnswerChallengeResponse, BeginEnrollmentRequest, BeginEnrollmentResponse,
    FinishEnrollmentRequest, FinishEnrollmentResponse, PollChallengesRequest, PollChallengesResponse,
    PresenceChallenge, PresenceOutcome, WatchChallengesRequest,
};
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

const CREDENTIAL: &str = "Y3JlZA"; // base64url("cred")

// ------------------------------------------------------------ fake authenticator

#[derive(Default)]
struct FakeAuth {
    signed: u32,
    origins: Arc<Mutex<Vec<String>>>,
}

impl Authenticator for FakeAuth {
    fn backend(&self) -> &'static str {
        "fake"
    }
    fn make_credential(&mut self, options: &str, origin: &str) -> Result<String, AgentError> {
        self.origins.lock().unwrap().push(origin.to_string());
        Ok(format!("registration for {options}"))
    }
    fn get_assertion(&mut self, options: &str, origin: &str) -> Result<String, AgentError> {
        self.origins.lock().unwrap().push(origin.to_string());
        self.signed += 1;
        Ok(format!("assertion {} for {options}", self.signed))
    }
    fn credential_id(&self) -> Option<Vec<u8>> {
        Some(b"cred".to_vec())
    }
    fn to_state_json(&self) -> String {
        format!(r#"{{"signed":{}}}"#, self.signed)
    }
    fn sign_count(&self) -> Option<u32> {
        Some(self.signed)
    }
}

// ------------------------------------------------------------ fake server

type ChallengeStream = Pin<Box<dyn Stream<Item = Result<PresenceChallenge, Status>> + Send>>;

/// What one WatchChallenges call does.
enum Watch {
    /// Send these, then close the stream.
    SendThenClose(Vec<PresenceChallenge>),
    /// Send these, then keep the stream open.
    SendThenHold(Vec<PresenceChallenge>),
    /// Refuse the call.
    Fail(Status),
}

#[derive(Default)]
struct Fake {
    watches: Mutex<VecDeque<Watch>>,
    watch_calls: Mutex<usize>,
    poll_result: Mutex<Vec<PresenceChallenge>>,
    poll_calls: Mutex<usize>,
    /// (challenge id, error) pairs, each returned once for that challenge's next answer.
    answer_errors: Mutex<Vec<(String, Status)>>,
    answers: Mutex<Vec<(String, String)>>,
    /// How long AnswerChallenge takes (after recording the answer).
    answer_delay: Mutex<Duration>,
    finish_requests: Mutex<Vec<FinishEnrollmentRequest>>,
}

impl Fake {
    fn answered_ids(&self) -> Vec<String> {
        self.answers.lock().unwrap().iter().map(|(id, _)| id.clone()).collect()
    }
}

#[derive(Clone)]
struct Shared(Arc<Fake>);

#[tonic::async_trait]
impl PresenceService for Shared {
    type WatchChallengesStream = ChallengeStream;

    async fn watch_challenges(
        &self,
        request: Request<WatchChallengesRequest>,
    ) -> Result<Response<ChallengeStream>, Status> {
        assert_eq!(request.get_ref().credential_id, CREDENTIAL);
        *self.0.watch_calls.lock().unwrap() += 1;
        let next = self.0.watches.lock().unwrap().pop_front();
        let stream: ChallengeStream = match next {
            Some(Watch::SendThenClose(items)) => Box::pin(tokio_stream::iter(items.into_iter().map(Ok))),
            Some(Watch::SendThenHold(items)) => {
                Box::pin(tokio_stream::iter(items.into_iter().map(Ok)).chain(tokio_stream::pending()))
            }
            Some(Watch::Fail(status)) => return Err(status),
            None => Box::pin(tokio_stream::pending()),
        };
        Ok(Response::new(stream))
    }

    async fn poll_challenges(
        &self,
        request: Request<PollChallengesRequest>,
    ) -> Result<Response<PollChallengesResponse>, Status> {
        assert_eq!(request.get_ref().credential_id, CREDENTIAL);
        *self.0.poll_calls.lock().unwrap() += 1;
        Ok(Response::new(PollChallengesResponse { challenges: self.0.poll_result.lock().unwrap().clone() }))
    }

    async fn answer_challenge(
        &self,
        request: Request<AnswerChallengeRequest>,
    ) -> Result<Response<AnswerChallengeResponse>, Status> {
        let request = request.into_inner();
        self.0.answers.lock().unwrap().push((request.challenge_id.clone(), request.assertion_response_json));
        let delay = *self.0.answer_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let mut errors = self.0.answer_errors.lock().unwrap();
        if let Some(i) = errors.iter().position(|(id, _)| *id == request.challenge_id) {
            return Err(errors.remove(i).1);
        }
        Ok(Response::new(AnswerChallengeResponse {
            outcome: PresenceOutcome::Ok as i32,
            verified_at_ms: 1,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl EnrollmentService for Shared {
    async fn begin_enrollment(
        &self,
        request: Request<BeginEnrollmentRequest>,
    ) -> Result<Response<BeginEnrollmentResponse>, Status> {
        if request.get_ref().token != "good-token" {
            return Err(Status::not_found("unknown or expired enrollment token"));
        }
        Ok(Response::new(BeginEnrollmentResponse {
            enrollment_id: "enr_1".into(),
            creation_options_json: "{creation options}".into(),
            origin: "https://tether.example.test".into(),
            expires_at_ms: 1,
            device_id: "dev_1".into(),
            worker_external_id: "w1".into(),
        }))
    }

    async fn finish_enrollment(
        &self,
        request: Request<FinishEnrollmentRequest>,
    ) -> Result<Response<FinishEnrollmentResponse>, Status> {
        self.0.finish_requests.lock().unwrap().push(request.into_inner());
        Ok(Response::new(FinishEnrollmentResponse {
            device_id: "dev_1".into(),
            credential_id: CREDENTIAL.into(),
            format: "packed".into(),
            attestation_type: "basic".into(),
            attested: true,
            trust_anchor: "CN=Test Root".into(),
            attestation_reason: String::new(),
            tier: tether_proto::v1::AttestationTier::HardwareAttested as i32,
        }))
    }

    async fn begin_tpm_enrollment(
        &self,
        _request: Request<tether_proto::v1::BeginTpmEnrollmentRequest>,
    ) -> Result<Response<tether_proto::v1::BeginTpmEnrollmentResponse>, Status> {
        Err(Status::unimplemented("the fake server has no TPM enrollment"))
    }

    async fn finish_tpm_enrollment(
        &self,
        _request: Request<tether_proto::v1::FinishTpmEnrollmentRequest>,
    ) -> Result<Response<FinishEnrollmentResponse>, Status> {
        Err(Status::unimplemented("the fake server has no TPM enrollment"))
    }
}

async fn start(fake: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let shared = Shared(fake);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PresenceServiceServer::new(shared.clone()))
            .add_service(EnrollmentServiceServer::new(shared))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

fn challenge(id: &str) -> PresenceChallenge {
    PresenceChallenge {
        challenge_id: id.into(),
        credential_id: CREDENTIAL.into(),
        device_id: "dev_1".into(),
        nonce: vec![7; 32],
        issued_at_ms: 1,
        deadline_ms: i64::MAX / 2,
        request_options_json: format!("{{options {id}}}"),
        origin: "https://tether.example.test".into(),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn enroll_passes_origin_and_token_through() {
    let fake = Arc::new(Fake::default());
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect(&format!("http://{addr}")).await.unwrap();
    let mut auth = FakeAuth::default();

    let enrollment = tether_agent::enroll(channel.clone(), "good-token", &mut auth).await.unwrap();
    assert_eq!(enrollment.device_id, "dev_1");
    assert_eq!(enrollment.credential_id, CREDENTIAL);
    assert_eq!(enrollment.format, "packed");
    assert!(enrollment.attested);
    assert_eq!(enrollment.trust_anchor, "CN=Test Root");
    assert_eq!(enrollment.worker_external_id, "w1");
    assert_eq!(*auth.origins.lock().unwrap(), vec!["https://tether.example.test"]);
    let finish = fake.finish_requests.lock().unwrap().clone();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0].enrollment_id, "enr_1");
    assert_eq!(finish[0].token, "good-token");
    assert_eq!(finish[0].registration_response_json, "registration for {creation options}");

    let error = tether_agent::enroll(channel, "bad-token", &mut auth).await.unwrap_err();
    assert!(matches!(&error, AgentError::Status(s) if s.code() == tonic::Code::NotFound));
    assert_eq!(error.to_string(), "unknown or expired enrollment token");
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = tether_agent::connect(&format!("http://127.0.0.1:{port}")).await.unwrap_err();
    assert!(matches!(error, AgentError::Transport(_)), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn stream_answers_each_challenge_once_and_reconnects() {
    let fake = Arc::new(Fake::default());
    fake.watches.lock().unwrap().extend([
        Watch::SendThenClose(vec![challenge("c1"), challenge("c2")]),
        // After the reconnect the server replays what is still pending.
        Watch::SendThenHold(vec![challenge("c2"), challenge("c3")]),
    ]);
    fake.answer_errors
        .lock()
        .unwrap()
        .push(("c2".into(), Status::permission_denied("the presence answer was rejected")));
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect_lazy(&format!("http://{addr}")).unwrap();

    let (stop, stopped) = oneshot::channel::<()>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_callback = seen.clone();
    let agent = tokio::spawn(async move {
        let mut auth = FakeAuth::default();
        tether_agent::run(
            channel,
            CREDENTIAL,
            &mut auth,
            WatchMode::Stream,
            async {
                let _ = stopped.await;
            },
            move |challenge, result| {
                seen_in_callback.lock().unwrap().push((challenge.challenge_id.clone(), result.is_ok()));
            },
        )
        .await
    });

    wait_until("three answers", || seen.lock().unwrap().len() >= 3).await;
    let _ = stop.send(());
    agent.await.unwrap().unwrap();

    assert_eq!(fake.answered_ids(), vec!["c1", "c2", "c3"]);
    assert_eq!(*fake.watch_calls.lock().unwrap(), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("c1".to_string(), true), ("c2".to_string(), false), ("c3".to_string(), true)]
    );
    let answers = fake.answers.lock().unwrap().clone();
    assert_eq!(answers[0].1, "assertion 1 for {options c1}");
}

#[tokio::test]
async fn shutdown_lets_the_answer_in_flight_finish() {
    let fake = Arc::new(Fake::default());
    *fake.answer_delay.lock().unwrap() = Duration::from_millis(500);
    fake.watches.lock().unwrap().push_back(Watch::SendThenHold(vec![challenge("slow")]));
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect_lazy(&format!("http://{addr}")).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_callback = seen.clone();
    let agent = tokio::spawn(async move {
        let mut auth = FakeAuth::default();
        tether_agent::run(
            channel,
            CREDENTIAL,
            &mut auth,
            WatchMode::Stream,
            async {
                let _ = stopped.await;
            },
            move |challenge, result| {
                seen_in_callback.lock().unwrap().push((challenge.challenge_id.clone(), result.is_ok()));
            },
        )
        .await
    });
    // The server has the answer but has not replied yet: stop now.
    wait_until("the answer to arrive", || !fake.answers.lock().unwrap().is_empty()).await;
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![("slow".to_string(), true)]);
}

#[tokio::test]
async fn stream_stops_on_a_permanent_error() {
    let fake = Arc::new(Fake::default());
    fake.watches.lock().unwrap().push_back(Watch::Fail(Status::permission_denied("the credential has been revoked")));
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect_lazy(&format!("http://{addr}")).unwrap();
    let mut auth = FakeAuth::default();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        tether_agent::run(channel, CREDENTIAL, &mut auth, WatchMode::Stream, std::future::pending(), |_, _| {}),
    )
    .await
    .expect("run should end by itself");
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "the credential has been revoked");
}

#[tokio::test]
async fn stream_retries_transient_watch_errors() {
    let fake = Arc::new(Fake::default());
    fake.watches.lock().unwrap().extend([
        Watch::Fail(Status::unavailable("the database is unavailable; retry later")),
        Watch::SendThenHold(vec![challenge("c1")]),
    ]);
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect_lazy(&format!("http://{addr}")).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let mut auth = FakeAuth::default();
        tether_agent::run(
            channel,
            CREDENTIAL,
            &mut auth,
            WatchMode::Stream,
            async {
                let _ = stopped.await;
            },
            |_, _| {},
        )
        .await
    });
    wait_until("the answer after the retry", || !fake.answers.lock().unwrap().is_empty()).await;
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
    assert_eq!(fake.answered_ids(), vec!["c1"]);
    assert_eq!(*fake.watch_calls.lock().unwrap(), 2);
}

#[tokio::test]
async fn poll_answers_once_and_retries_transient_failures_a_bounded_number_of_times() {
    let fake = Arc::new(Fake::default());
    *fake.poll_result.lock().unwrap() = vec![challenge("p1"), challenge("p2")];
    {
        let mut errors = fake.answer_errors.lock().unwrap();
        for _ in 0..10 {
            errors.push(("p2".into(), Status::unavailable("try later")));
        }
    }
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect_lazy(&format!("http://{addr}")).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let mut auth = FakeAuth::default();
        tether_agent::run(
            channel,
            CREDENTIAL,
            &mut auth,
            WatchMode::Poll { interval: Duration::from_millis(20) },
            async {
                let _ = stopped.await;
            },
            |_, _| {},
        )
        .await
    });
    wait_until("several polls", || *fake.poll_calls.lock().unwrap() >= 6).await;
    let _ = stop.send(());
    agent.await.unwrap().unwrap();

    let ids = fake.answered_ids();
    assert_eq!(ids.iter().filter(|id| *id == "p1").count(), 1, "{ids:?}");
    let p2 = ids.iter().filter(|id| *id == "p2").count();
    assert_eq!(p2, usize::try_from(MAX_ANSWER_ATTEMPTS).unwrap(), "{ids:?}");
}

#[tokio::test]
async fn answer_pending_answers_everything_once() {
    let fake = Arc::new(Fake::default());
    *fake.poll_result.lock().unwrap() = vec![challenge("a"), challenge("b")];
    fake.answer_errors.lock().unwrap().push(("b".into(), Status::failed_precondition("late")));
    let addr = start(fake.clone()).await;
    let channel = tether_agent::connect(&format!("http://{addr}")).await.unwrap();
    let mut auth = FakeAuth::default();
    let results = tether_agent::answer_pending(channel, CREDENTIAL, &mut auth).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[0].1.is_ok());
    assert!(matches!(&results[1].1, Err(AgentError::Status(s)) if s.message() == "late"));
    assert_eq!(fake.answered_ids(), vec!["a", "b"]);
}

#[tokio::test]
async fn persisting_authenticator_saves_before_the_answer_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    let state = AgentState {
        server: "http://127.0.0.1:1".into(),
        device_id: "dev_1".into(),
        credential_id: CREDENTIAL.into(),
        backend: "fake".into(),
        authenticator_state: serde_json::json!({"signed": 0}),
    };
    let mut auth = PersistingAuthenticator::new(Box::new(FakeAuth::default()), state, &path);
    auth.get_assertion("{}", "https://tether.example.test").unwrap();
    auth.get_assertion("{}", "https://tether.example.test").unwrap();
    let saved = AgentState::load(&path).unwrap();
    assert_eq!(saved.authenticator_state, serde_json::json!({"signed": 2}));
    assert_eq!(auth.sign_count(), Some(2));

    // No state file, no answer: a reused counter would look like a clone.
    let unwritable = dir.path().join("missing-dir").join("agent.json");
    let mut auth = PersistingAuthenticator::new(Box::new(FakeAuth::default()), saved, &unwritable);
    let error = auth.get_assertion("{}", "https://tether.example.test").unwrap_err();
    assert!(matches!(error, AgentError::Authenticator(_)), "{error}");
    assert!(error.to_string().contains("withholding"), "{error}");
}
