//! Throughput and latency of presence verification and access checks, over
//! real gRPC on loopback against a real `tetherd` process with its SQLite
//! store. Build everything in release first:
//!
//!     cargo build --release --workspace --bins
//!     target/release/tether-bench --devices 200 --concurrency 16 --seconds 10
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{Org, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

struct Options {
    devices: usize,
    concurrency: usize,
    seconds: u64,
    answers_per_device: usize,
}

fn parse_options() -> Options {
    let mut options = Options { devices: 200, concurrency: 16, seconds: 10, answers_per_device: 10 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (args[i].as_str(), value) {
            ("--devices", Some(v)) => options.devices = v,
            ("--concurrency", Some(v)) => options.concurrency = v.max(1),
            ("--seconds", Some(v)) => options.seconds = v as u64,
            ("--answers-per-device", Some(v)) => options.answers_per_device = v.max(1),
            _ => {
                eprintln!("usage: tether-bench [--devices N] [--concurrency N] [--seconds N] [--answers-per-device N]");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    options
}

struct Stats {
    count: usize,
    wall: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats { count: latencies.len(), wall, p50: pick(0.50), p99: pick(0.99) }
}

fn print_row(name: &str, s: &Stats) {
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} |",
        s.count,
        s.count as f64 / s.wall.as_secs_f64(),
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let options = parse_options();
    // A slow scheduler: the benchmark issues its own challenges.
    let server = Server::start_with_tick("1h");
    let org = Org::create(&server, "bench").await;
    let started = Instant::now();
    let mut devices = Vec::with_capacity(options.devices);
    for i in 0..options.devices {
        devices.push(org.enrolled_device(&server, &format!("w-{i}")).await);
    }
    eprintln!("enrolled {} devices in {:.1}s", devices.len(), started.elapsed().as_secs_f64());

    // Pre-issue and pre-sign the challenges so the measured call is only the
    // server's verification, consumption and recording of each answer.
    let mut admin = server.admin().await;
    let mut presence = server.presence().await;
    let mut signed: Vec<Vec<(String, String)>> = Vec::new();
    for device in devices.iter_mut() {
        for _ in 0..options.answers_per_device {
            admin
                .challenge_now(authed(
                    &org.keys.admin_key,
                    pb::ChallengeNowRequest { device_id: device.device_id.clone(), deadline_seconds: 3600 },
                ))
                .await
                .unwrap();
        }
        let pending = presence
            .poll_challenges(pb::PollChallengesRequest { credential_id: device.credential_id.clone() })
            .await
            .unwrap()
            .into_inner()
            .challenges;
        signed.push(pending.iter().map(|c| (c.challenge_id.clone(), sign(c, &mut device.auth))).collect());
    }
    let total: usize = signed.iter().map(Vec::len).sum();
    eprintln!("signed {total} answers");

    // Presence: each task owns whole devices, answering in counter order.
    let server = Arc::new(server);
    let mut queues: Vec<Vec<(String, String)>> = vec![Vec::new(); options.concurrency];
    for (i, device_answers) in signed.into_iter().enumerate() {
        queues[i % options.concurrency].extend(device_answers);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for queue in queues {
        let mut client = server.presence().await;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(queue.len());
            for (challenge_id, json) in queue {
                let t = Instant::now();
                client
                    .answer_challenge(pb::AnswerChallengeRequest {
                        challenge_id,
                        assertion_response_json: json,
                        tpm_quote: None,
                    })
                    .await
                    .expect("answer verified");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let presence_stats = stats(latencies, started.elapsed());

    // Access checks against the now-present devices, for a fixed time.
    let ids: Arc<Vec<(String, String)>> =
        Arc::new(devices.iter().map(|d| (d.worker.clone(), d.device_id.clone())).collect());
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..options.concurrency {
        let ids = Arc::clone(&ids);
        let key = org.gateway_key.clone();
        let mut access = server.access().await;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = t;
            while Instant::now() < deadline {
                let (worker, device) = &ids[i % ids.len()];
                let t0 = Instant::now();
                let decision = access
                    .check_access(authed(
                        &key,
                        pb::CheckAccessRequest {
                            worker_external_id: worker.clone(),
                            device_id: device.clone(),
                            credential_id: String::new(),
                            source_ip: "127.0.0.1".into(),
                            gateway_id: "bench".into(),
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                latencies.push(t0.elapsed());
                assert_eq!(decision.decision, pb::Decision::Allow as i32, "{:?}", decision.reasons);
                i += 7;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let access_stats = stats(latencies, started.elapsed());

    println!(
        "\n{} enrolled devices, concurrency {}, SQLite store, loopback gRPC\n",
        options.devices, options.concurrency
    );
    println!("| operation | calls | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    print_row("presence answer (verify + consume + record)", &presence_stats);
    print_row("access check (decide + record session)", &access_stats);
}
