//! Timed presence and access load over real gRPC, spread over replicas:
//! client task `t` talks to replica `t % replicas`, each on its own HTTP/2
//! connection. Calls that fail are counted, not retried.

use crate::authed;
use crate::fixtures::sign;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::v1 as pb;
use tether_proto::v1::access_service_client::AccessServiceClient;
use tether_proto::v1::admin_service_client::AdminServiceClient;
use tether_proto::v1::presence_service_client::PresenceServiceClient;
use tether_softkey::SoftAuthenticator;
use tonic::transport::Channel;

pub struct Stats {
    pub count: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Stats {
    fn new(mut latencies: Vec<Duration>, failures: Vec<String>, wall: Duration) -> Stats {
        latencies.sort();
        let pick = |q: f64| {
            let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(index).copied().unwrap_or_default()
        };
        let (p50, p99) = (pick(0.50), pick(0.99));
        Stats {
            count: latencies.len(),
            errors: failures.len(),
            first_error: failures.into_iter().next(),
            wall,
            p50,
            p99,
        }
    }

    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// One BENCHMARKS.md table row: setup columns, then calls, per second, p50, p99.
pub fn row(setup: &[String], s: &Stats) -> String {
    format!(
        "| {} | {} | {:.0} | {:.2} | {:.2} |",
        setup.join(" | "),
        s.count,
        s.per_second(),
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0
    )
}

/// A device the bench answers as.
pub struct Answerer {
    pub device_id: String,
    pub credential_id: String,
    pub auth: SoftAuthenticator,
}

/// (challenge id, signed answer) in the device's counter order.
pub type Signed = Vec<(String, String)>;

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string()).expect("server URL").connect().await.expect("connect to tetherd")
}

/// Issues `per_device` challenges to every device ("challenge now", admin key)
/// and signs all its pending challenges oldest first, from `concurrency` tasks.
pub async fn presign(
    url: &str,
    admin_key: &str,
    devices: Vec<Answerer>,
    per_device: usize,
    concurrency: usize,
) -> Vec<Signed> {
    let mut shares: Vec<Vec<Answerer>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, device) in devices.into_iter().enumerate() {
        shares[i % concurrency].push(device);
    }
    let mut tasks = Vec::new();
    for share in shares {
        let channel = channel(url).await;
        let key = admin_key.to_string();
        tasks.push(tokio::spawn(async move {
            let mut admin = AdminServiceClient::new(channel.clone());
            let mut presence = PresenceServiceClient::new(channel);
            let mut out = Vec::new();
            for mut device in share {
                for _ in 0..per_device {
                    let request =
                        pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 3600 };
                    admin.challenge_now(authed(&key, request)).await.expect("challenge now");
                }
                let poll = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
                let pending = presence.poll_challenges(poll).await.expect("poll challenges").into_inner().challenges;
                out.push(pending.iter().map(|c| (c.challenge_id.clone(), sign(c, &mut device.auth))).collect());
            }
            out
        }));
    }
    let mut signed = Vec::new();
    for task in tasks {
        signed.extend(task.await.expect("presign task"));
    }
    signed
}

/// Answers every pre-signed challenge. A device's answers stay in one task,
/// in order, so its counter only moves forward.
pub async fn presence(urls: &[String], signed: Vec<Signed>, concurrency: usize) -> Stats {
    let mut queues: Vec<Signed> = vec![Vec::new(); concurrency];
    for (i, answers) in signed.into_iter().enumerate() {
        queues[i % concurrency].extend(answers);
    }
    let mut clients = Vec::new();
    for t in 0..concurrency {
        clients.push(PresenceServiceClient::new(channel(&urls[t % urls.len()]).await));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut client, queue) in clients.into_iter().zip(queues) {
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::with_capacity(queue.len()), Vec::new());
            for (challenge_id, json) in queue {
                let t = Instant::now();
                let request =
                    pb::AnswerChallengeRequest { challenge_id, assertion_response_json: json, ..Default::default() };
                match client.answer_challenge(request).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(status) => failures.push(format!("{status:?}")),
                }
            }
            (latencies, failures)
        }));
    }
    gather(tasks, started).await
}

/// The (worker, device) an access check names, by call number.
pub type Pick = Arc<dyn Fn(u64) -> (String, String) + Send + Sync>;

/// Access checks for `seconds`; a DENY counts as an error (every device picked
/// should be allowed), with its reasons in `first_error`.
pub async fn access(urls: &[String], gateway_key: &str, pick: Pick, concurrency: usize, seconds: u64) -> Stats {
    let mut clients = Vec::new();
    for t in 0..concurrency {
        clients.push(AccessServiceClient::new(channel(&urls[t % urls.len()]).await));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (t, mut client) in clients.into_iter().enumerate() {
        let (pick, key) = (Arc::clone(&pick), gateway_key.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            let mut call = t as u64;
            while Instant::now() < deadline {
                let (worker, device) = pick(call);
                call += concurrency as u64;
                let request = pb::CheckAccessRequest {
                    worker_external_id: worker,
                    device_id: device,
                    credential_id: String::new(),
                    source_ip: "127.0.0.1".into(),
                    gateway_id: "bench".into(),
                    ..Default::default()
                };
                let t0 = Instant::now();
                match client.check_access(authed(&key, request)).await {
                    Ok(r) if r.get_ref().decision == pb::Decision::Allow as i32 => latencies.push(t0.elapsed()),
                    Ok(r) => failures.push(format!("DENY {:?}", r.into_inner().reasons)),
                    Err(status) => failures.push(format!("{status:?}")),
                }
            }
            (latencies, failures)
        }));
    }
    gather(tasks, started).await
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)>>, started: Instant) -> Stats {
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, f) = task.await.expect("load task");
        latencies.extend(l);
        failures.extend(f);
    }
    Stats::new(latencies, failures, started.elapsed())
}

/// Spreads call numbers over `0..n` without clustering (a multiplicative
/// hash), so checks touch the whole table rather than a hot prefix.
pub fn spread(call: u64, n: u64) -> u64 {
    call.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n.max(1)
}
