//! Timed presence and access load over real gRPC, spread over replicas:
//! client task `t` talks to replica `t % replicas`. Access checks (CheckAccess,
//! or Envoy's ext_authz Check) go over one HTTP/2 connection per task (the
//! gateway's) and name each device's own source address; presence answers go over one connection per device
//! address, made from that address (see crate::bench::Addresses), all opened
//! before the timed section. Calls that fail are counted, not retried.

use crate::authed;
use crate::bench::{channel_from, ext_authz};
use crate::fixtures::sign;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use std::collections::HashMap;
use std::net::Ipv4Addr;
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

/// A device the bench answers as, from its own source address.
pub struct Answerer {
    pub device_id: String,
    pub credential_id: String,
    pub auth: SoftAuthenticator,
    pub address: Ipv4Addr,
}

/// One device's pre-signed answers.
pub struct Signed {
    /// Where the device answers from.
    pub address: Ipv4Addr,
    /// (challenge id, signed answer) in the device's counter order.
    pub answers: Vec<(String, String)>,
}

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
                let answers = pending.iter().map(|c| (c.challenge_id.clone(), sign(c, &mut device.auth))).collect();
                out.push(Signed { address: device.address, answers });
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

/// Answers every pre-signed challenge, each device from its own address. The
/// devices of one address share its connection and stay in one task, in
/// order, so each counter only moves forward. The connections are opened
/// before the clock starts.
pub async fn presence(urls: &[String], signed: Vec<Signed>, concurrency: usize) -> Stats {
    // Devices by address, in the order given: one group per connection.
    let mut groups: Vec<Signed> = Vec::new();
    let mut index: HashMap<Ipv4Addr, usize> = HashMap::new();
    for device in signed {
        match index.get(&device.address) {
            Some(&g) => groups[g].answers.extend(device.answers),
            None => {
                index.insert(device.address, groups.len());
                groups.push(device);
            }
        }
    }
    let connections = groups.len();
    let mut shares: Vec<Vec<Signed>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (g, group) in groups.into_iter().enumerate() {
        shares[g % concurrency].push(group);
    }
    let opened = Instant::now();
    let mut connecting = Vec::new();
    for (t, share) in shares.into_iter().enumerate() {
        let url = urls[t % urls.len()].clone();
        connecting.push(tokio::spawn(async move {
            let mut queue = Vec::with_capacity(share.len());
            for group in share {
                let channel = channel_from(&url, group.address).await.unwrap_or_else(|e| panic!("{e}"));
                queue.push((PresenceServiceClient::new(channel), group.answers));
            }
            queue
        }));
    }
    let mut queues = Vec::new();
    for task in connecting {
        queues.push(task.await.expect("connect task"));
    }
    eprintln!(
        "opened {connections} answering connections (one per device address) in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for queue in queues {
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            for (mut client, answers) in queue {
                for (challenge_id, json) in answers {
                    let t = Instant::now();
                    let request = pb::AnswerChallengeRequest {
                        challenge_id,
                        assertion_response_json: json,
                        ..Default::default()
                    };
                    match client.answer_challenge(request).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(status) => failures.push(format!("{status:?}")),
                    }
                }
            }
            (latencies, failures)
        }));
    }
    gather(tasks, started).await
}

/// What one access check names, by call number.
pub struct Target {
    pub worker: String,
    pub device: String,
    /// The device's own source address, as the gateway saw it.
    pub source_ip: Ipv4Addr,
}

/// The access check to make for a call number.
pub type Pick = Arc<dyn Fn(u64) -> Target + Send + Sync>;

/// How the gateway asks for each decision.
pub enum Ask {
    /// `tether.v1.AccessService/CheckAccess` naming the worker, device and source address.
    CheckAccess,
    /// `envoy.service.auth.v3.Authorization/Check` as Envoy sends it for one HTTP request
    /// from the device's address with its certificate (crate::bench::ext_authz): the
    /// certificate of each device the picks name.
    ExtAuthz(Arc<ext_authz::Certificates>),
}

/// Access decisions for `seconds`, asked as `ask` says; a DENY counts as an
/// error (every device picked should be allowed), with its reasons in
/// `first_error`.
pub async fn access(
    urls: &[String],
    gateway_key: &str,
    pick: Pick,
    concurrency: usize,
    seconds: u64,
    ask: Ask,
) -> Stats {
    let ask = Arc::new(ask);
    let mut channels = Vec::new();
    for t in 0..concurrency {
        channels.push(channel(&urls[t % urls.len()]).await);
    }
    let headers = ext_authz::browser_headers();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (t, channel) in channels.into_iter().enumerate() {
        let (pick, key, ask, headers) = (Arc::clone(&pick), gateway_key.to_string(), Arc::clone(&ask), headers.clone());
        tasks.push(tokio::spawn(async move {
            let mut access = AccessServiceClient::new(channel.clone());
            let mut envoy = AuthorizationClient::new(channel);
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            let mut call = t as u64;
            while Instant::now() < deadline {
                let target = pick(call);
                call += concurrency as u64;
                let outcome = match ask.as_ref() {
                    Ask::CheckAccess => {
                        let request = pb::CheckAccessRequest {
                            worker_external_id: target.worker,
                            device_id: target.device,
                            credential_id: String::new(),
                            source_ip: target.source_ip.to_string(),
                            gateway_id: "bench".into(),
                            ..Default::default()
                        };
                        let t0 = Instant::now();
                        match access.check_access(authed(&key, request)).await {
                            Ok(r) if r.get_ref().decision == pb::Decision::Allow as i32 => Ok(t0.elapsed()),
                            Ok(r) => Err(format!("DENY {:?}", r.into_inner().reasons)),
                            Err(status) => Err(format!("{status:?}")),
                        }
                    }
                    Ask::ExtAuthz(certificates) => {
                        let Some(certificate) = certificates.get(&target.device) else {
                            failures.push(format!("no certificate was made for {}", target.device));
                            continue;
                        };
                        let request = ext_authz::check_request(certificate, target.source_ip, headers.clone());
                        let t0 = Instant::now();
                        match envoy.check(authed(&key, request)).await {
                            Ok(r) if r.get_ref().status.as_ref().is_some_and(|s| s.code == 0) => Ok(t0.elapsed()),
                            Ok(r) => Err(format!("DENY {:?}", r.into_inner().status)),
                            Err(status) => Err(format!("{status:?}")),
                        }
                    }
                };
                match outcome {
                    Ok(latency) => latencies.push(latency),
                    Err(failure) => failures.push(failure),
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
