//! Tenants are adversaries: what one tenant's gateway reports or its devices claim must not
//! change another tenant's access decision (finding 1 of the adversarial review, issue #13).
//! Tenant "mallory" runs five attested laptops of its own from 127.0.0.50; tenant "victim"'s
//! worker works from 127.0.0.1. Before the fix, mallory's gateway reporting its laptops at the
//! victim's address — or its laptops claiming the victim's Wi-Fi BSSID — raised a high
//! `shared_egress` flag on the victim's laptop, denied it and probed it. Declaring its workers'
//! homes at the victim's home adds nothing the victim's policy can deny on (issue #15).

use std::net::Ipv4Addr;
use std::time::Duration;
use tether_e2e::bench::channel_from;
use tether_e2e::fixtures::{EnrolledDevice, Org, is_allow, next_challenge, prove_presence, sign_with_posture};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::transport::Channel;

const MALLORY_HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 50);
const VICTIM_ADDRESS: &str = "127.0.0.1";

/// Enrolls a laptop of `org` whose every call comes from `source`.
async fn laptop_at(server: &Server, org: &Org, worker: &str, source: Ipv4Addr) -> (EnrolledDevice, Channel) {
    let channel = channel_from(&server.url, source).await.expect("connect from a loopback address");
    let device_id = org.register_device(server, worker, &format!("SN-{worker}")).await;
    let token = org.token(server, &device_id).await;
    let mut auth = org.attested_authenticator();
    let mut enrollment = pb::enrollment_service_client::EnrollmentServiceClient::new(channel.clone());
    let begun = enrollment.begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() }).await.unwrap();
    let begun = begun.into_inner();
    let json = auth.make_credential(&begun.creation_options_json, &begun.origin).unwrap();
    let done = enrollment
        .finish_enrollment(pb::FinishEnrollmentRequest {
            enrollment_id: begun.enrollment_id,
            token,
            registration_response_json: json,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.attested);
    (EnrolledDevice { device_id, credential_id: done.credential_id, worker: worker.into(), auth }, channel)
}

/// Answers the laptop's next challenge over its own connection, with a posture report.
async fn answer_with_lan(server: &Server, device: &mut EnrolledDevice, channel: &Channel, posture: &str) {
    let challenge = next_challenge(server, &device.credential_id).await;
    let json = sign_with_posture(&challenge, &mut device.auth, posture.as_bytes());
    let mut presence = pb::presence_service_client::PresenceServiceClient::new(channel.clone());
    let request = pb::AnswerChallengeRequest {
        challenge_id: challenge.challenge_id,
        assertion_response_json: json,
        posture_json: posture.as_bytes().to_vec(),
        ..Default::default()
    };
    presence.answer_challenge(request).await.expect("a correct answer");
}

async fn challenge_now(server: &Server, org: &Org, device: &EnrolledDevice) {
    tether_e2e::fixtures::challenge_now(server, org, device, 300).await;
}

async fn check(server: &Server, org: &Org, device: &EnrolledDevice, source_ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        worker_external_id: device.worker.clone(),
        device_id: device.device_id.clone(),
        source_ip: source_ip.into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    };
    access.check_access(authed(&org.gateway_key, request)).await.unwrap().into_inner()
}

async fn flags_of(server: &Server, org: &Org, device: &EnrolledDevice, kind: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device.device_id.clone(), ..Default::default() };
    let flags = reports.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == kind).collect()
}

async fn shared_egress_flags(server: &Server, org: &Org, device: &EnrolledDevice) -> Vec<pb::Flag> {
    flags_of(server, org, device, "shared_egress").await
}

/// Declares the worker's home as an admin would (UpsertWorker).
async fn declare_home(server: &Server, org: &Org, worker: &str, lat: f64, lon: f64) {
    let mut admin = server.admin().await;
    let home = pb::WorkerHome { lat, lon, country: "us".into() };
    let request = pb::UpsertWorkerRequest { external_id: worker.into(), home: Some(home), ..Default::default() };
    admin.upsert_worker(authed(&org.keys.admin_key, request)).await.unwrap();
}

async fn open_challenges(server: &Server, device: &EnrolledDevice) -> usize {
    let mut presence = server.presence().await;
    let request = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
    presence.poll_challenges(request).await.unwrap().into_inner().challenges.len()
}

#[tokio::test]
async fn another_tenants_reports_and_claims_cannot_deny_or_probe_a_worker() {
    let server = Server::start();
    let victim = Org::create(&server, "victim").await;
    let mallory = Org::create(&server, "mallory").await;
    let mut alice = victim.enrolled_device(&server, "alice").await;
    prove_presence(&server, &mut alice).await;
    assert!(is_allow(&check(&server, &victim, &alice, VICTIM_ADDRESS).await));

    let mut laptops = Vec::new();
    for i in 0..5 {
        let (mut laptop, channel) = laptop_at(&server, &mallory, &format!("m{i}"), MALLORY_HOME).await;
        challenge_now(&server, &mallory, &laptop).await;
        answer_with_lan(&server, &mut laptop, &channel, "{}").await;
        laptops.push((laptop, channel));
    }

    // 1. Mallory's gateway reports its own laptops at the victim's address.
    for (laptop, _) in &laptops {
        check(&server, &mallory, laptop, VICTIM_ADDRESS).await;
    }
    // 2. Mallory's laptops sign posture reports claiming the victim's Wi-Fi (a BSSID is broadcast).
    let victims_wifi =
        format!(r#"{{"lan":{{"wifi_bssid_hash":"{}"}}}}"#, tether_attestation::posture::lan_hash("02:00:5e:10:00:01"));
    for (laptop, channel) in &mut laptops {
        challenge_now(&server, &mallory, laptop).await;
        answer_with_lan(&server, laptop, channel, &victims_wifi).await;
    }
    let victim_channel = server.channel().await;
    challenge_now(&server, &victim, &alice).await;
    answer_with_lan(&server, &mut alice, &victim_channel, &victims_wifi).await;

    // The victim's own gateway still admits her, nothing is flagged on her laptop, and no probe
    // round challenges it (probes are issued by the scheduler: give it several ticks).
    let decision = check(&server, &victim, &alice, VICTIM_ADDRESS).await;
    assert!(is_allow(&decision), "the victim is denied: {:?} {:?}", decision.reasons, decision.open_flags);
    assert!(shared_egress_flags(&server, &victim, &alice).await.is_empty(), "the victim is flagged");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(open_challenges(&server, &alice).await, 0, "the victim's laptop was probed");

    // Mallory's claims still count against mallory itself: its own reports are its own evidence.
    assert!(!shared_egress_flags(&server, &mallory, &laptops[0].0).await.is_empty());
}

#[tokio::test]
async fn another_tenants_home_declarations_cannot_deny_a_worker() {
    let server = Server::start();
    let victim = Org::create(&server, "victim").await;
    let mallory = Org::create(&server, "mallory").await;
    // The victim denies from review up, so only an `info` finding may reach alice.
    let strict = pb::FlagPolicy { deny_at: pb::FlagSeverity::Review as i32, kind_rules: vec![] };
    victim.update_policy(&server, pb::UpdatePolicyRequest { flag_policy: Some(strict), ..Default::default() }).await;
    declare_home(&server, &victim, "alice", 40.7128, -74.006).await;
    let mut alice = victim.enrolled_device(&server, "alice").await;

    // Mallory declares five workers at alice's home (20 m away), runs their laptops from its own
    // address, has its gateway report them at alice's address and has them claim her Wi-Fi.
    let victims_wifi =
        format!(r#"{{"lan":{{"wifi_bssid_hash":"{}"}}}}"#, tether_attestation::posture::lan_hash("02:00:5e:10:00:02"));
    let mut laptops = Vec::new();
    for i in 0..5 {
        declare_home(&server, &mallory, &format!("m{i}"), 40.7130, -74.006).await;
        let (mut laptop, channel) = laptop_at(&server, &mallory, &format!("m{i}"), MALLORY_HOME).await;
        challenge_now(&server, &mallory, &laptop).await;
        answer_with_lan(&server, &mut laptop, &channel, &victims_wifi).await;
        check(&server, &mallory, &laptop, VICTIM_ADDRESS).await;
        laptops.push(laptop);
    }
    let victim_channel = server.channel().await;
    challenge_now(&server, &victim, &alice).await;
    answer_with_lan(&server, &mut alice, &victim_channel, &victims_wifi).await;

    // Alice's strict policy admits her, and nothing of Mallory's declarations reaches her tenant:
    // a finding on declarations alone would also tell Mallory who lives where.
    let decision = check(&server, &victim, &alice, VICTIM_ADDRESS).await;
    assert!(is_allow(&decision), "the victim is denied: {:?} {:?}", decision.reasons, decision.open_flags);
    assert!(decision.open_flags.iter().all(|f| f.kind != "home_collision"), "{:?}", decision.open_flags);
    let flags = flags_of(&server, &victim, &alice, "home_collision").await;
    assert!(flags.is_empty(), "{flags:?}");

    // Mallory's own gateway reports placed its laptops with alice, whom tetherd saw there: its
    // own claims count against itself only (from its laptops' events once enough were placed),
    // for review: laptops seen there for minutes are not parked there (a co-living house's first day).
    let last = laptops.last().expect("five laptops");
    let own = flags_of(&server, &mallory, last, "home_collision").await;
    assert!(own.iter().any(|f| f.severity == pb::FlagSeverity::Review as i32), "{own:?}");
}
