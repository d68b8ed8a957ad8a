//! Durability under faults (issue #7): `tetherd` is killed with SIGKILL in the
//! middle of concurrent enrollments and presence answers, restarted on the same
//! database and checked. Every call the client saw acknowledged must be there,
//! single use must survive the crash (acknowledged answers cannot be replayed,
//! consumed tokens cannot enroll again), a call cut off by the crash must be
//! all or nothing (a token it did not consume still enrolls), and the database
//! must hold no half-written record and an intact audit chain. Runs on SQLite,
//! and on PostgreSQL when TETHER_TEST_POSTGRES_URL is set.

#[path = "durability/checks.rs"]
mod checks;

use checks::{check_nothing_half_written, connect};
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{EnrolledDevice, Org, sign};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tether_proto::v1::admin_service_client::AdminServiceClient;
use tether_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use tether_proto::v1::presence_service_client::PresenceServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Kill points per run; each round loads the process restarted by the last.
const ROUNDS: usize = 5;
/// Devices answering presence challenges, one task each.
const PRESENCE_DEVICES: usize = 4;
/// Tasks registering devices, issuing tokens and enrolling with them.
const ENROLLERS: usize = 2;
/// The kill lands this long after the load starts (milliseconds, randomized).
const KILL_AFTER_MS: std::ops::Range<u64> = 300..1500;

/// One enrollment as its client saw it.
struct Enrollment {
    device_id: String,
    token: String,
    /// The credential the authenticator made; empty when the call failed before.
    credential_id: String,
    acknowledged: bool,
}

/// One presence answer as its client saw it.
struct Answer {
    challenge_id: String,
    json: String,
    sign_count: u32,
    acknowledged: Option<pb::AnswerChallengeResponse>,
}

/// Why a load task ended, and when.
struct Stopped {
    at: Instant,
    status: Status,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_nothing_is_half_written() {
    survive_sigkill(&[]).await;
}

/// SQLite without an fsync per commit (`--sqlite-synchronous normal`): a commit is in the
/// log file when it returns, so a killed process loses nothing (an OS crash could).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_without_fsync_per_commit() {
    survive_sigkill(&["--sqlite-synchronous", "normal"]).await;
}

async fn survive_sigkill(args: &[&str]) {
    let started = Instant::now();
    let mut server = Server::start_with_args(args);
    let org = Arc::new(Org::create(&server, "acme").await);
    let mut devices = Vec::new();
    for i in 0..PRESENCE_DEVICES {
        devices.push(org.enrolled_device(&server, &format!("w-present-{i}")).await);
    }
    let (mut acked_enrollments, mut acked_answers) = (0, 0);
    for round in 0..ROUNDS {
        let mut presence_tasks = Vec::new();
        for device in devices.drain(..) {
            let (admin, presence) = (server.admin().await, server.presence().await);
            presence_tasks.push(tokio::spawn(answer_until_stopped(
                admin,
                presence,
                org.keys.admin_key.clone(),
                device,
            )));
        }
        let mut enroll_tasks = Vec::new();
        for task in 0..ENROLLERS {
            let (admin, enrollment) = (server.admin().await, server.enrollment().await);
            let prefix = format!("w-r{round}-t{task}");
            enroll_tasks.push(tokio::spawn(enroll_until_stopped(admin, enrollment, Arc::clone(&org), prefix)));
        }
        let delay = KILL_AFTER_MS.start
            + (uuid::Uuid::new_v4().as_u128() % u128::from(KILL_AFTER_MS.end - KILL_AFTER_MS.start)) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let killed_at = Instant::now();
        server.kill_hard();

        let mut answers = Vec::new();
        for task in presence_tasks {
            let (device, mine, stopped) = joined(task).await;
            assert_killed(&stopped, killed_at, "presence");
            answers.push((device.credential_id.clone(), mine));
            devices.push(device);
        }
        let mut enrollments = Vec::new();
        for task in enroll_tasks {
            let (mine, stopped) = joined(task).await;
            assert_killed(&stopped, killed_at, "enrollment");
            enrollments.extend(mine);
        }
        let acked = enrollments.iter().filter(|e| e.acknowledged).count();
        let answered = answers.iter().flat_map(|(_, a)| a).filter(|a| a.acknowledged.is_some()).count();
        eprintln!(
            "round {round}: SIGKILL after {delay} ms; acknowledged {acked} of {} enrollments, {answered} of {} answers",
            enrollments.len(),
            answers.iter().map(|(_, a)| a.len()).sum::<usize>()
        );
        acked_enrollments += acked;
        acked_answers += answered;

        server.restart();
        let retried = check_enrollments(&server, &org, &enrollments).await;
        eprintln!("round {round}: {retried} enrollments cut off before commit enrolled again with their tokens");
        check_answers(&server, &org, &answers).await;
        check_nothing_half_written(&server).await;
        check_audit_chain(&server, &org);
    }
    assert!(acked_enrollments > 0 && acked_answers > 0, "the load never got a call through before the kills");
    eprintln!("{ROUNDS} kill points checked in {:.1} s", started.elapsed().as_secs_f64());
}

async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("a load task hung after the kill")
        .expect("a load task panicked")
}

/// The load ran until the kill: a task that failed before it met a real error.
fn assert_killed(stopped: &Stopped, killed_at: Instant, what: &str) {
    assert!(stopped.at >= killed_at, "a {what} call failed before the kill: {:?}", stopped.status);
}

/// Challenge now, poll, sign, answer — until a call fails (the kill).
async fn answer_until_stopped(
    mut admin: AdminServiceClient<Channel>,
    mut presence: PresenceServiceClient<Channel>,
    admin_key: String,
    mut device: EnrolledDevice,
) -> (EnrolledDevice, Vec<Answer>, Stopped) {
    let mut answers = Vec::new();
    loop {
        let request = pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 120 };
        let issued = match admin.challenge_now(authed(&admin_key, request)).await {
            Ok(r) => r.into_inner().challenge_ids,
            Err(status) => return (device, answers, Stopped { at: Instant::now(), status }),
        };
        let poll = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
        let pending = match presence.poll_challenges(poll).await {
            Ok(r) => r.into_inner().challenges,
            Err(status) => return (device, answers, Stopped { at: Instant::now(), status }),
        };
        let challenge =
            pending.iter().find(|c| issued.contains(&c.challenge_id)).expect("the new challenge is pending");
        let json = sign(challenge, &mut device.auth);
        let request = pb::AnswerChallengeRequest {
            challenge_id: challenge.challenge_id.clone(),
            assertion_response_json: json.clone(),
            ..Default::default()
        };
        let result = presence.answer_challenge(request).await.map(|r| r.into_inner());
        let sign_count = device.auth.sign_count();
        let challenge_id = challenge.challenge_id.clone();
        match result {
            Ok(response) => answers.push(Answer { challenge_id, json, sign_count, acknowledged: Some(response) }),
            Err(status) => {
                answers.push(Answer { challenge_id, json, sign_count, acknowledged: None });
                return (device, answers, Stopped { at: Instant::now(), status });
            }
        }
    }
}

/// Register a device, issue a token, enroll with it — until a call fails.
async fn enroll_until_stopped(
    mut admin: AdminServiceClient<Channel>,
    mut enrollment: EnrollmentServiceClient<Channel>,
    org: Arc<Org>,
    prefix: String,
) -> (Vec<Enrollment>, Stopped) {
    let mut done = Vec::new();
    for i in 0u64.. {
        let worker = format!("{prefix}-{i}");
        let register = pb::RegisterDeviceRequest {
            serial_number: format!("SN-{worker}"),
            model: "ThinkPad T14".into(),
            worker_external_id: worker.clone(),
            worker_display_name: worker.clone(),
            ..Default::default()
        };
        let device_id = match admin.register_device(authed(&org.keys.admin_key, register)).await {
            Ok(r) => r.into_inner().id,
            Err(status) => return (done, Stopped { at: Instant::now(), status }),
        };
        let request = pb::CreateEnrollmentTokenRequest { device_id: device_id.clone(), ttl_seconds: 0 };
        let token = match admin.create_enrollment_token(authed(&org.keys.admin_key, request)).await {
            Ok(r) => r.into_inner().secret,
            Err(status) => return (done, Stopped { at: Instant::now(), status }),
        };
        let mut auth = org.attested_authenticator();
        let result = enroll_with(&mut enrollment, &token, &mut auth).await;
        let credential_id = auth.credential_id().map(|id| tether_attestation::b64url_encode(&id)).unwrap_or_default();
        if let Ok(response) = &result {
            assert_eq!(response.credential_id, credential_id, "the server bound the authenticator's credential");
        }
        let acknowledged = result.is_ok();
        done.push(Enrollment { device_id, token, credential_id, acknowledged });
        if let Err(status) = result {
            return (done, Stopped { at: Instant::now(), status });
        }
    }
    unreachable!("the loop ends with the kill")
}

async fn enroll_with(
    client: &mut EnrollmentServiceClient<Channel>,
    token: &str,
    auth: &mut tether_softkey::SoftAuthenticator,
) -> Result<pb::FinishEnrollmentResponse, Status> {
    let begun = client.begin_enrollment(pb::BeginEnrollmentRequest { token: token.into() }).await?.into_inner();
    let json = auth
        .make_credential(&begun.creation_options_json, &begun.origin)
        .map_err(|e| Status::internal(format!("soft authenticator: {e}")))?;
    let finish = pb::FinishEnrollmentRequest {
        enrollment_id: begun.enrollment_id,
        token: token.into(),
        registration_response_json: json,
    };
    client.finish_enrollment(finish).await.map(|r| r.into_inner())
}

/// Acknowledged enrollments are bound and their tokens spent; an enrollment
/// the crash cut off either committed whole or left its token usable.
async fn check_enrollments(server: &Server, org: &Org, enrollments: &[Enrollment]) -> usize {
    let mut admin = server.admin().await;
    let mut client = server.enrollment().await;
    let mut retried = 0;
    for e in enrollments {
        let request = pb::GetDeviceRequest { device_id: e.device_id.clone() };
        let device = admin.get_device(authed(&org.keys.admin_key, request)).await.unwrap().into_inner();
        let bound: Vec<&str> = device.credentials.iter().map(|c| c.credential_id.as_str()).collect();
        let again = client.begin_enrollment(pb::BeginEnrollmentRequest { token: e.token.clone() }).await;
        if e.acknowledged || !bound.is_empty() {
            assert_eq!(bound, [e.credential_id.as_str()], "device {}: acknowledged={}", e.device_id, e.acknowledged);
            let refused = again.expect_err("a consumed token enrolled again after the crash");
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        } else {
            again.expect("an enrollment that never committed must leave its token usable");
            let mut auth = org.attested_authenticator();
            let again = enroll_with(&mut client, &e.token, &mut auth).await.expect("retry after the crash");
            assert!(again.attested);
            retried += 1;
        }
    }
    retried
}

/// Acknowledged answers are recorded once and cannot be replayed; each
/// device's credential carries its latest acknowledged counter and time.
async fn check_answers(server: &Server, org: &Org, answers: &[(String, Vec<Answer>)]) {
    let pool = connect(server).await;
    let mut presence = server.presence().await;
    let mut admin = server.admin().await;
    for (credential_id, mine) in answers {
        for a in mine.iter().filter(|a| a.acknowledged.is_some()) {
            let ok: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM presence_events e JOIN challenges ch ON ch.id = e.challenge_id \
                 WHERE e.challenge_id = $1 AND e.outcome = 'ok' AND ch.consumed_at_ms IS NOT NULL",
            )
            .bind(&a.challenge_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(ok, 1, "acknowledged answer to {} is not recorded exactly once", a.challenge_id);
            let replay = pb::AnswerChallengeRequest {
                challenge_id: a.challenge_id.clone(),
                assertion_response_json: a.json.clone(),
                ..Default::default()
            };
            let refused = presence.answer_challenge(replay).await.expect_err("a replay was accepted after the crash");
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        }
        let Some(last) = mine.iter().rev().find(|a| a.acknowledged.is_some()) else { continue };
        let credential = credential_of(&mut admin, org, &pool, credential_id).await;
        assert!(credential.sign_count >= last.sign_count, "counter went back: {credential:?}");
        let verified_at = last.acknowledged.as_ref().map(|r| r.verified_at_ms).unwrap_or_default();
        assert!(credential.last_presence_at_ms >= verified_at, "last presence went back: {credential:?}");
    }
    pool.close().await;
}

async fn credential_of(
    admin: &mut AdminServiceClient<Channel>,
    org: &Org,
    pool: &AnyPool,
    credential_id: &str,
) -> pb::Credential {
    let device_id: String = sqlx::query_scalar("SELECT device_id FROM credentials WHERE id = $1")
        .bind(credential_id)
        .fetch_one(pool)
        .await
        .unwrap();
    let device =
        admin.get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id })).await.unwrap().into_inner();
    device.credentials.into_iter().find(|c| c.credential_id == credential_id).expect("the credential is listed")
}

/// The whole chain re-hashes, through the public API and the CLI.
fn check_audit_chain(server: &Server, org: &Org) {
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.analyst_key.as_str())];
    let out = run_bin("tether", &["--output", "json", "audit", "verify"], &env);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "audit chain broken: {verdict} {}", String::from_utf8_lossy(&out.stderr));
}
