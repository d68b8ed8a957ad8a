//! `WatchChallenges` needs no API key, so open challenge streams are bounded
//! per credential, per HTTP/2 connection and per process, and every
//! connection's concurrent calls by HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. A
//! flood of thousands of stream requests is refused past those bounds with
//! RESOURCE_EXHAUSTED naming the bound, tetherd's memory stays flat, and a
//! legitimate agent still gets its challenges while gateways' checks answer.

use std::time::{Duration, Instant};
use tether_e2e::Server;
use tether_e2e::fixtures::{EnrolledDevice, Org, answer_json, challenge_now, prove_presence, sign};
use tether_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

type Presence = pb::presence_service_client::PresenceServiceClient<Channel>;
type Held = Vec<Streaming<pb::PresenceChallenge>>;

/// Attempts of the flood: the 30,000 of the review (TETHER_TEST_STREAM_ATTEMPTS overrides).
fn attempts() -> usize {
    std::env::var("TETHER_TEST_STREAM_ATTEMPTS").ok().and_then(|n| n.parse().ok()).unwrap_or(30_000)
}

/// How many refusals named each bound, and anything else.
#[derive(Default, Debug)]
struct Refusals {
    per_credential: usize,
    per_connection: usize,
    total: usize,
}

impl Refusals {
    fn count(&mut self, status: &tonic::Status) {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let message = status.message();
        let bound = if message.contains("--watch-streams-per-credential") {
            &mut self.per_credential
        } else if message.contains("--watch-streams-per-connection") {
            &mut self.per_connection
        } else if message.contains("--watch-streams-max") {
            &mut self.total
        } else {
            panic!("a refusal that names no bound: {message}")
        };
        *bound += 1;
        assert!(status.metadata().get("retry-after-ms").is_some(), "refusals say when to retry");
    }

    fn add(&mut self, other: Refusals) {
        self.per_credential += other.per_credential;
        self.per_connection += other.per_connection;
        self.total += other.total;
    }
}

async fn watch(client: &mut Presence, credential_id: &str) -> Result<Streaming<pb::PresenceChallenge>, tonic::Status> {
    let request = pb::WatchChallengesRequest { credential_id: credential_id.into() };
    client.watch_challenges(request).await.map(|r| r.into_inner())
}

/// `count` stream requests on one connection, all in flight at once, cycling over `credentials`.
async fn flood(server: &Server, credentials: &[String], count: usize, offset: usize) -> (Held, Refusals) {
    let client = Presence::new(server.channel().await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut client = client.clone();
        let credential = credentials[(i + offset) % credentials.len()].clone();
        tasks.spawn(async move { watch(&mut client, &credential).await });
    }
    let (mut held, mut refusals) = (Vec::new(), Refusals::default());
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(stream) => held.push(stream),
            Err(status) => refusals.count(&status),
        }
    }
    (held, refusals)
}

async fn enrolled(server: &Server, org: &Org, count: usize) -> Vec<EnrolledDevice> {
    let mut devices = Vec::new();
    for i in 0..count {
        devices.push(org.enrolled_device(server, &format!("w-{i}")).await);
    }
    devices
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test]
async fn a_flood_of_streams_is_refused_past_each_bound_and_memory_stays_flat() {
    let server = Server::start_with_args(&[
        "--watch-streams-max",
        "60",
        "--watch-streams-per-connection",
        "25",
        "--watch-streams-per-credential",
        "4",
    ]);
    let org = Org::create(&server, "acme").await;
    let mut agent = org.enrolled_device(&server, "w-agent").await;
    prove_presence(&server, &mut agent).await;
    // The attacker knows ten credential ids (a stream of an unknown one is refused NOT_FOUND).
    let mallory = Org::create(&server, "mallory").await;
    let known: Vec<String> = enrolled(&server, &mallory, 10).await.into_iter().map(|d| d.credential_id).collect();
    let baseline = server.rss_kib();

    // One connection, one request at a time: its 26th stream is refused, whatever the credential.
    let mut one = Presence::new(server.channel().await);
    let (mut held, mut refusals) = (Vec::new(), Refusals::default());
    for i in 0..100 {
        match watch(&mut one, &known[i % known.len()]).await {
            Ok(stream) => held.push(stream),
            Err(status) => refusals.count(&status),
        }
    }
    assert_eq!(held.len(), 25);
    assert_eq!(refusals.per_connection, 75, "{refusals:?}");

    // Then thousands more over four connections at once: each credential holds at most four.
    let started = Instant::now();
    let total = attempts();
    let done = std::sync::atomic::AtomicBool::new(false);
    let floods = async {
        let quarter = total / 4;
        let all = tokio::join!(
            flood(&server, &known, quarter, 0),
            flood(&server, &known, quarter, 1),
            flood(&server, &known, quarter, 2),
            flood(&server, &known, quarter, 3),
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        [all.0, all.1, all.2, all.3]
    };
    let mut checks = Vec::new();
    let gateway = async {
        // A gateway's checks keep answering while the flood runs.
        while checks.is_empty() || !done.load(std::sync::atomic::Ordering::Relaxed) {
            let asked = Instant::now();
            // A decision either way is an answer (the risk engine may flag so many checks).
            org.check(&server, &agent.worker, &agent.device_id).await;
            checks.push(asked.elapsed());
        }
    };
    let (results, ()) = tokio::join!(floods, gateway);
    for (streams, more) in results {
        held.extend(streams);
        refusals.add(more);
    }
    let flood_time = started.elapsed();
    assert_eq!(held.len(), 40, "ten credentials × four streams; {refusals:?}");
    assert!(refusals.per_credential > 0, "{refusals:?}");
    assert_eq!(refusals.total, 0, "the attacker's 40 streams leave room under the process bound");
    let peak = server.rss_kib();

    // The agent's own stream still opens and delivers its challenge.
    let mut presence = server.presence().await;
    let mut stream = watch(&mut presence, &agent.credential_id).await.expect("the agent's stream opens");
    let challenge = challenge_now(&server, &org, &agent, 30).await;
    let got = loop {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("a challenge in 5 s");
        let next = next.expect("the stream stays open").expect("a challenge");
        if next.challenge_id == challenge.challenge_id {
            break next;
        }
    };
    answer_json(&server, &got.challenge_id, sign(&got, &mut agent.auth)).await.unwrap();
    let asked = Instant::now();
    org.check(&server, &agent.worker, &agent.device_id).await;
    let check_after = asked.elapsed();

    // Closing the streams gives their slots back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let (streams, refusals) = flood(&server, &known[..1], 4, 0).await;
        if streams.len() == 4 || Instant::now() > deadline {
            break (streams.len(), refusals);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(again.0, 4, "slots are released when streams close: {:?}", again.1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib();

    checks.sort();
    let p99 = checks.get(checks.len() * 99 / 100).copied().unwrap_or_default();
    println!(
        "{total} attempts in {flood_time:?}: RSS baseline {:.1} MiB, peak {:.1} MiB, after close {:.1} MiB; \
         {} checks during the flood, p99 {p99:?}, max {:?}; a check after: {check_after:?}; refusals {refusals:?}",
        mib(baseline),
        mib(peak),
        mib(after),
        checks.len(),
        checks.last().copied().unwrap_or_default(),
    );
    assert!(!checks.is_empty(), "a check answered during the flood");
    // A held stream costs ~18 KiB (4,100 of them: +74 MiB), so 40 cost under 1 MiB;
    // the rest is the allocator keeping the refused requests' freed buffers.
    // Unbounded, the 30,000 attempts here would hold ~540 MiB.
    assert!(peak < baseline + 24 * 1024, "RSS grew {:.1} MiB during the flood", mib(peak - baseline.min(peak)));
    assert!(after < baseline + 24 * 1024, "RSS stays {:.1} MiB above baseline", mib(after - baseline.min(after)));
    assert!(checks.iter().all(|t| *t < Duration::from_secs(5)), "checks stay answered: {checks:?}");
}

#[tokio::test]
async fn the_process_bound_and_http2_stream_limit_hold() {
    let server = Server::start_with_args(&[
        "--watch-streams-max",
        "8",
        "--watch-streams-per-credential",
        "4",
        "--grpc-max-concurrent-streams",
        "4",
    ]);
    let org = Org::create(&server, "acme").await;
    let devices = enrolled(&server, &org, 3).await;
    let credential = |i: usize| devices[i].credential_id.clone();

    // Four streams fill their connection: a fifth call on it waits, one on another connection answers.
    let mut first = Presence::new(server.channel().await);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(watch(&mut first, &credential(0)).await.unwrap());
    }
    let poll = pb::PollChallengesRequest { credential_id: credential(0) };
    let waited = tokio::time::timeout(Duration::from_secs(1), first.poll_challenges(poll.clone())).await;
    assert!(waited.is_err(), "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS=4 holds the fifth call back");
    let mut second = Presence::new(server.channel().await);
    second.poll_challenges(poll).await.expect("another connection is served");

    for _ in 0..4 {
        held.push(watch(&mut second, &credential(1)).await.unwrap());
    }
    let mut third = Presence::new(server.channel().await);
    let refused = watch(&mut third, &credential(2)).await.expect_err("the ninth stream is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("--watch-streams-max"), "{}", refused.message());

    held.truncate(7);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match watch(&mut third, &credential(2)).await {
            Ok(_) => break,
            Err(status) if Instant::now() < deadline => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("a closed stream's slot was not released: {status:?}"),
        }
    }
}

/// Credential ids are not secret, so an attacker can hold every stream slot of a victim's
/// credential. The victim's agent, refused its stream, still answers its challenges: it polls
/// once whenever its stream is refused or drops, before waiting to reconnect.
#[tokio::test]
async fn an_agent_whose_stream_slots_are_taken_still_answers_in_time() {
    let server = Server::start_with_args(&["--watch-streams-per-credential", "2"]);
    let org = Org::create(&server, "acme").await;
    let mut device = org.enrolled_device(&server, "w-victim").await;
    prove_presence(&server, &mut device).await;

    let mut attacker = Presence::new(server.channel().await);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(watch(&mut attacker, &device.credential_id).await.expect("the attacker takes a slot"));
    }
    let refused = watch(&mut attacker, &device.credential_id).await.expect_err("the slots are all taken");
    assert_eq!(refused.code(), Code::ResourceExhausted);

    let target = challenge_now(&server, &org, &device, 60).await;
    let channel = tether_agent::connect(&server.url).await.unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut done_tx = Some(done_tx);
    let mut outcomes = Vec::new();
    let started = Instant::now();
    let shutdown = async {
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
    };
    tether_agent::run(channel, &device.credential_id, &mut device.auth, tether_agent::WatchMode::Stream, shutdown, {
        |challenge, result| {
            if challenge.challenge_id == target.challenge_id {
                outcomes.push(result.as_ref().map(|r| r.outcome).map_err(|e| e.to_string()));
                if let Some(tx) = done_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(outcomes, vec![Ok(pb::PresenceOutcome::Ok as i32)], "the victim's challenge was not answered");
    assert!(started.elapsed() < Duration::from_secs(30), "answered only after {:?}", started.elapsed());
    drop(held);
}
