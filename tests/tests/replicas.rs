//! Several tetherd replicas on one database, raced by concurrent clients:
//! every token and every challenge is consumed exactly once, and every
//! missed challenge is recorded exactly once. Runs on SQLite (processes
//! sharing one file) and, in CI, on PostgreSQL.

use std::time::Duration;
use tether_e2e::fixtures::{Org, challenge_now, next_challenge, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tonic::Code;

const ROUNDS: usize = 8;

#[tokio::test]
async fn a_challenge_answered_through_three_replicas_at_once_counts_once() {
    let a = Server::start();
    let (b, c) = (a.replica(), a.replica());
    let org = Org::create(&a, "acme").await;
    let mut device = org.enrolled_device(&a, "w-alice").await;
    let replicas = [&a, &b, &c];
    for round in 0..ROUNDS {
        let challenge = if round == 0 {
            next_challenge(&a, &device.credential_id).await
        } else {
            challenge_now(&a, &org, &device, 60).await
        };
        let json = sign(&challenge, &mut device.auth);
        let mut clients = Vec::new();
        for replica in replicas {
            clients.push(replica.presence().await);
        }
        let answers = clients.into_iter().map(|mut client| {
            let request = pb::AnswerChallengeRequest {
                challenge_id: challenge.challenge_id.clone(),
                assertion_response_json: json.clone(),
                ..Default::default()
            };
            async move { client.answer_challenge(request).await }
        });
        let results = futures_join_all(answers).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(err.code(), Code::FailedPrecondition, "round {round}: {err:?}");
        }
    }
    // Exactly ROUNDS successful answers and the rest recorded as replays.
    let mut reports = a.reports().await;
    let replays = reports
        .list_presence_failures(authed(
            &org.analyst_key,
            pb::ListPresenceFailuresRequest {
                outcomes: vec![pb::PresenceOutcome::Replayed as i32],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(replays.len(), ROUNDS * 2);
}

#[tokio::test]
async fn an_enrollment_token_raced_through_three_replicas_is_used_once() {
    let a = Server::start();
    let (b, c) = (a.replica(), a.replica());
    let org = Org::create(&a, "acme").await;
    for round in 0..ROUNDS {
        let device_id = org.register_device(&a, &format!("w-{round}"), &format!("SN-{round}")).await;
        let token = org.token(&a, &device_id).await;
        // Three agents (three different authenticators) race with the same token.
        let mut attempts = Vec::new();
        for replica in [&a, &b, &c] {
            let mut client = replica.enrollment().await;
            let begun = client
                .begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() })
                .await
                .unwrap()
                .into_inner();
            let mut auth = org.attested_authenticator();
            let json = auth.make_credential(&begun.creation_options_json, &begun.origin).unwrap();
            attempts.push((
                client,
                pb::FinishEnrollmentRequest {
                    enrollment_id: begun.enrollment_id,
                    token: token.clone(),
                    registration_response_json: json,
                },
            ));
        }
        let finishes =
            attempts.into_iter().map(|(mut client, request)| async move { client.finish_enrollment(request).await });
        let results = futures_join_all(finishes).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: {results:?}");
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(err.code(), Code::FailedPrecondition, "round {round}: {err:?}");
        }
        let mut admin = a.admin().await;
        let device = admin
            .get_device(authed(&org.keys.admin_key, pb::GetDeviceRequest { device_id }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(device.credentials.len(), 1, "round {round}: one credential bound");
    }
}

#[tokio::test]
async fn three_replicas_sweeping_record_each_miss_once() {
    let a = Server::start();
    let org = Org::create(&a, "acme").await;
    org.update_policy(
        &a,
        pb::UpdatePolicyRequest {
            presence_interval_seconds: Some(1),
            challenge_deadline_seconds: Some(1),
            ..Default::default()
        },
    )
    .await;
    let devices = [org.enrolled_device(&a, "w-a").await, org.enrolled_device(&a, "w-b").await];
    let (_b, _c) = (a.replica(), a.replica());
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let mut reports = a.reports().await;
    let events = reports
        .list_presence_failures(authed(
            &org.analyst_key,
            pb::ListPresenceFailuresRequest {
                page: Some(pb::Page { page_size: 500, page_token: String::new() }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(events.len() >= devices.len() * 2, "misses were recorded: {}", events.len());
    let mut challenge_ids: Vec<&str> = events.iter().map(|e| e.challenge_id.as_str()).collect();
    challenge_ids.sort();
    let total = challenge_ids.len();
    challenge_ids.dedup();
    assert_eq!(challenge_ids.len(), total, "a missed challenge was recorded twice");
}

/// Polls every future to completion concurrently (no extra dependency).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
