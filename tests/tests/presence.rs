//! Presence challenges: single use, deadlines, replays, clones, streams.

use std::time::Duration;
use tether_e2e::fixtures::{
    EnrolledDevice, Org, answer_json, challenge_now, deny_codes, is_allow, next_challenge, prove_presence, sign,
};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

async fn failures(server: &Server, org: &Org, device_id: &str) -> Vec<pb::PresenceEvent> {
    let mut reports = server.reports().await;
    reports
        .list_presence_failures(authed(
            &org.analyst_key,
            pb::ListPresenceFailuresRequest { device_id: device_id.into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

fn outcome(event: &pb::PresenceEvent) -> pb::PresenceOutcome {
    pb::PresenceOutcome::try_from(event.outcome).unwrap()
}

#[tokio::test]
async fn enroll_then_presence_then_access_is_allowed() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-alice").await;

    let before = org.check(&server, "w-alice", &device.device_id).await;
    assert!(!is_allow(&before));
    assert_eq!(deny_codes(&before), vec![pb::DenyReason::PresenceNever]);

    let answered = prove_presence(&server, &mut device).await;
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);

    let after = org.check(&server, "w-alice", &device.device_id).await;
    assert!(is_allow(&after), "{:?}", after.reasons);
    assert!(after.last_presence_at_ms > 0);
    assert_eq!(after.credential_id, device.credential_id);
}

#[tokio::test]
async fn a_replayed_assertion_is_rejected_and_recorded() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-bob").await;
    let challenge = next_challenge(&server, &device.credential_id).await;
    let json = sign(&challenge, &mut device.auth);
    answer_json(&server, &challenge.challenge_id, json.clone()).await.unwrap();

    // The same answer again: the challenge was consumed.
    let err = answer_json(&server, &challenge.challenge_id, json.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already answered"), "{}", err.message());

    // The old answer against a fresh challenge.
    let mut admin = server.admin().await;
    let fresh = admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 60 },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let err = answer_json(&server, &fresh[0], json).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("replay"), "{}", err.message());

    let events = failures(&server, &org, &device.device_id).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| outcome(e) == pb::PresenceOutcome::Replayed));
    assert!(events.iter().all(|e| e.source_ip == "127.0.0.1"));
}

#[tokio::test]
async fn a_tampered_signature_is_rejected() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-carl").await;
    let challenge = next_challenge(&server, &device.credential_id).await;
    let json = sign(&challenge, &mut device.auth);
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let signature = value["response"]["signature"].as_str().unwrap().to_string();
    // Flip one base64url character in the middle of the DER signature.
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    value["response"]["signature"] = serde_json::Value::String(chars.into_iter().collect());
    let err = answer_json(&server, &challenge.challenge_id, value.to_string()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Anybody can send a bad signature: it is not the device's doing, so not in its history.
    assert!(failures(&server, &org, &device.device_id).await.is_empty());
    // Still no successful presence.
    assert_eq!(deny_codes(&org.check(&server, "w-carl", &device.device_id).await), vec![pb::DenyReason::PresenceNever]);
}

#[tokio::test]
async fn missed_presence_is_recorded_and_access_denied_after_the_window() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    org.update_policy(
        &server,
        pb::UpdatePolicyRequest {
            presence_interval_seconds: Some(1),
            challenge_deadline_seconds: Some(1),
            presence_window_seconds: Some(2),
            ..Default::default()
        },
    )
    .await;
    let mut device = org.enrolled_device(&server, "w-dora").await;
    prove_presence(&server, &mut device).await;
    assert!(is_allow(&org.check(&server, "w-dora", &device.device_id).await));

    // Stop answering: challenges keep coming every second and go unanswered.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let decision = org.check(&server, "w-dora", &device.device_id).await;
    assert!(!is_allow(&decision));
    assert_eq!(deny_codes(&decision), vec![pb::DenyReason::PresenceStale]);

    let events = failures(&server, &org, &device.device_id).await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| outcome(e) == pb::PresenceOutcome::Missed), "{events:?}");
    assert!(events.iter().all(|e| e.worker_external_id == "w-dora"));
    // Each missed challenge is recorded exactly once.
    let mut ids: Vec<&str> = events.iter().map(|e| e.challenge_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
}

#[tokio::test]
async fn a_late_answer_is_rejected() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-eve").await;
    let mut admin = server.admin().await;
    let ids = admin
        .challenge_now(authed(
            &org.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 1 },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let mut presence = server.presence().await;
    let pending = presence
        .poll_challenges(pb::PollChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .challenges;
    let challenge = pending.into_iter().find(|c| c.challenge_id == ids[0]).unwrap();
    let json = sign(&challenge, &mut device.auth);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = answer_json(&server, &challenge.challenge_id, json).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("deadline"), "{}", err.message());
}

#[tokio::test]
async fn a_counter_going_backwards_flags_a_clone_and_denies() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-finn").await;
    // Snapshot the authenticator: a clone of the key material.
    let mut clone = tether_softkey::SoftAuthenticator::from_state_json(&device.auth.to_state_json()).unwrap();
    prove_presence(&server, &mut device).await;
    prove_presence_with_challenge_now(&server, &org, &mut device).await;
    assert!(is_allow(&org.check(&server, "w-finn", &device.device_id).await));

    let challenge = challenge_now(&server, &org, &device, 60).await;
    let json = sign(&challenge, &mut clone);
    let err = answer_json(&server, &challenge.challenge_id, json).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("cloned"), "{}", err.message());

    let decision = org.check(&server, "w-finn", &device.device_id).await;
    assert!(!is_allow(&decision));
    assert!(deny_codes(&decision).contains(&pb::DenyReason::OpenHighSeverityFlags));
    let events = failures(&server, &org, &device.device_id).await;
    assert_eq!(outcome(&events[0]), pb::PresenceOutcome::CloneSuspected);
}

async fn prove_presence_with_challenge_now(server: &Server, org: &Org, device: &mut EnrolledDevice) {
    let challenge = challenge_now(server, org, device, 60).await;
    let json = sign(&challenge, &mut device.auth);
    answer_json(server, &challenge.challenge_id, json).await.unwrap();
}

#[tokio::test]
async fn the_stream_delivers_on_demand_challenges() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-gail").await;
    prove_presence(&server, &mut device).await;

    let mut presence = server.presence().await;
    let mut stream = presence
        .watch_challenges(pb::WatchChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut admin = server.admin().await;
    let ids = admin
        .challenge_now(authed(
            &org.analyst_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 30 },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let got = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.challenge_id, ids[0]);
    assert_eq!(got.nonce.len(), 32);
    assert!(got.deadline_ms > got.issued_at_ms);
    let json = sign(&got, &mut device.auth);
    answer_json(&server, &got.challenge_id, json).await.unwrap();
}

#[tokio::test]
async fn unknown_and_revoked_credentials_cannot_watch() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let device = org.enrolled_device(&server, "w-hal").await;
    let mut presence = server.presence().await;
    let err = presence.poll_challenges(pb::PollChallengesRequest { credential_id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut admin = server.admin().await;
    admin
        .revoke_credential(authed(
            &org.keys.admin_key,
            pb::RevokeCredentialRequest { credential_id: device.credential_id.clone(), reason: "lost".into() },
        ))
        .await
        .unwrap();
    let err = presence
        .watch_challenges(pb::WatchChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// The scheduler challenges a credential once per interval: the first tick after
/// enrollment issues one, and the ticks after it (every 200 ms here) issue no other
/// while the interval runs (store::presence::credentials_due searches by the time
/// each credential was last challenged).
#[tokio::test]
async fn the_scheduler_challenges_once_per_interval() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    org.update_policy(&server, pb::UpdatePolicyRequest { presence_interval_seconds: Some(3600), ..Default::default() })
        .await;
    let device = org.enrolled_device(&server, "w-ivy").await;
    let mut presence = server.presence().await;
    let mut pending = Vec::new();
    for _ in 0..50 {
        let poll = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
        pending = presence.poll_challenges(poll).await.unwrap().into_inner().challenges;
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending.len(), 1, "the first tick issues one challenge");
    // Ten more ticks.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let poll = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
    let again = presence.poll_challenges(poll).await.unwrap().into_inner().challenges;
    let issued: Vec<i64> = again.iter().map(|c| c.issued_at_ms).collect();
    assert_eq!(again.len(), 1, "a credential challenged within its interval was challenged again at {issued:?}");
}

/// A backlog larger than one scheduler batch (500) is drained in one pass: at a million
/// credentials and a 1 h interval, ~1,400 fall due every 5 s tick.
#[tokio::test]
async fn one_scheduler_pass_drains_a_backlog_larger_than_a_batch() {
    let mut server = Server::start_with_tick("1h");
    let org = Org::create(&server, "acme").await;
    let template = org.enrolled_device(&server, "w-template").await;
    let tenant_id = {
        let mut admin = server.admin().await;
        admin.get_tenant(authed(&org.keys.admin_key, pb::GetTenantRequest {})).await.unwrap().into_inner().id
    };
    let addresses = tether_e2e::bench::Addresses::plan(1_200, 0, 1_024).unwrap();
    tether_e2e::bench::seed::seed(&server.database_url, &tenant_id, 1_200, &[template], addresses).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    // Every credential falls due at once.
    sqlx::query("UPDATE credentials SET last_challenged_at_ms = 0").execute(&pool).await.unwrap();
    let scheduled = || async {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM challenges WHERE reason = 'scheduled' AND consumed_at_ms IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        sqlx::Row::get::<i64, _>(&row, "n")
    };
    let before = scheduled().await;
    // The 1 h tick runs once, at start.
    server.restart();
    let mut issued = 0;
    for _ in 0..100 {
        issued = scheduled().await - before;
        if issued >= 1_201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(issued, 1_201, "one pass issued {issued} of 1,201 due challenges");
    pool.close().await;
}
