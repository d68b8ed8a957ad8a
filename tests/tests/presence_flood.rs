//! Issue #13, finding 3: credential ids are not secret, and PollChallenges
//! needs no key. Someone who knows a device's credential id — here another
//! tenant's user — polls its challenges and floods them with answers that do
//! not verify, from their own address. The device's answer budget and its
//! history must not pay for that: the real agent's answer gets through, the
//! challenge is not missed, and no `failed` record or flag names the victim.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tether_e2e::bench::{channel_from, enroll_from};
use tether_e2e::fixtures::{Org, is_allow};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;
use tether_proto::v1::presence_service_client::PresenceServiceClient;
use tonic::Code;

/// Garbage that looks more and more like an answer: not JSON, an empty
/// object, and a whole assertion signed by the attacker's own key.
fn garbage(forged: &str, n: usize) -> String {
    match n % 3 {
        0 => "not an assertion".into(),
        1 => "{}".into(),
        _ => forged.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_answers_neither_hold_up_nor_blame_the_device() {
    // The production presence limits (the test kit raises them).
    let server =
        Server::start_with_args(&["--limit-presence-per-device", "2", "--limit-unverified-answers-per-address", "1"]);
    let victim = Org::create(&server, "victim").await;
    let attacker = Org::create(&server, "attacker").await;
    let mut device = victim.enrolled_device(&server, "w-victim").await;
    // The attacker's own laptop, at the attacker's address (one address for two tenants' devices
    // would be a shared_egress flag of its own).
    let mut own = enroll_from(&server, &attacker, "w-attacker", [127, 0, 0, 2].into()).await;

    // A challenge for the victim; the attacker finds it by credential id, from 127.0.0.2.
    let mut admin = server.admin().await;
    let issued = admin
        .challenge_now(authed(
            &victim.keys.admin_key,
            pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 30 },
        ))
        .await
        .unwrap()
        .into_inner()
        .challenge_ids;
    let mut flood = PresenceServiceClient::new(channel_from(&server.url, [127, 0, 0, 2].into()).await.unwrap());
    let polled = flood
        .poll_challenges(pb::PollChallengesRequest { credential_id: device.credential_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .challenges;
    let target = polled.into_iter().find(|c| issued.contains(&c.challenge_id)).expect("the challenge is pending");
    // The attacker's own key signs the victim's challenge: a real assertion, the wrong key.
    let mut options: serde_json::Value = serde_json::from_str(&target.request_options_json).unwrap();
    options["allowCredentials"] = serde_json::json!([]);
    let forged = own.auth.get_assertion(&options.to_string(), &target.origin).unwrap();

    let (sent, limited, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let attack = {
        let (sent, limited, stop, id) = (sent.clone(), limited.clone(), stop.clone(), target.challenge_id.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let request = pb::AnswerChallengeRequest {
                    challenge_id: id.clone(),
                    assertion_response_json: garbage(&forged, n),
                    ..Default::default()
                };
                let status = flood.answer_challenge(request).await.expect_err("garbage was accepted");
                match status.code() {
                    Code::ResourceExhausted => {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                    Code::InvalidArgument | Code::PermissionDenied => {}
                    other => panic!("garbage answer: {other:?} {}", status.message()),
                }
                // About 200 answers a second: eight times the 25/s of the report.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    while sent.load(Ordering::Relaxed) < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The real agent, watching its challenge stream, answers while the flood goes on.
    let channel = tether_agent::connect(&server.url).await.unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut done_tx = Some(done_tx);
    let mut results = Vec::new();
    let shutdown = async {
        let _ = tokio::time::timeout(Duration::from_secs(20), done_rx).await;
    };
    tether_agent::run(
        channel,
        &device.credential_id,
        &mut device.auth,
        tether_agent::WatchMode::Stream,
        shutdown,
        |challenge, result| {
            results
                .push((challenge.challenge_id.clone(), result.as_ref().map(|r| r.outcome).map_err(|e| e.to_string())));
            if challenge.challenge_id == target.challenge_id
                && let Some(tx) = done_tx.take()
            {
                let _ = tx.send(());
            }
        },
    )
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    attack.await.unwrap();

    // The first and only attempt at the attacked challenge succeeded (a scheduled one may come too).
    let attempts: Vec<_> = results.iter().filter(|(id, _)| *id == target.challenge_id).collect();
    assert_eq!(attempts, vec![&(target.challenge_id.clone(), Ok(pb::PresenceOutcome::Ok as i32))], "{results:?}");
    assert!(results.iter().all(|(_, r)| *r == Ok(pb::PresenceOutcome::Ok as i32)), "{results:?}");
    let (sent, limited) = (sent.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    assert!(limited * 10 >= sent * 8, "the sender's budget held back only {limited} of {sent} garbage answers");

    let mut reports = server.reports().await;
    let failures = reports
        .list_presence_failures(authed(
            &victim.analyst_key,
            pb::ListPresenceFailuresRequest { device_id: device.device_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(failures.is_empty(), "the garbage was written into the victim's history: {failures:?}");
    let flags = reports
        .list_flags(authed(
            &victim.analyst_key,
            pb::ListFlagsRequest { device_id: device.device_id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .flags;
    assert!(flags.is_empty(), "{flags:?}");
    let check = victim.check(&server, "w-victim", &device.device_id).await;
    assert!(is_allow(&check), "{:?}", check.reasons);
}
