//! Throughput and latency of presence answers and access checks over real gRPC
//! on loopback, against real `tetherd` processes: one, or several replicas on
//! one database (SQLite, or PostgreSQL when TETHER_TEST_POSTGRES_URL is set).
//! Devices are enrolled over gRPC (`--devices N`) or, for large populations,
//! seeded straight into the tables (`--seed N`, see tether_e2e::bench::seed).
//! Every device has its own loopback source address (tether_e2e::bench::Addresses),
//! so the population looks like workers at home, not like one laptop farm; the
//! bench prints how many risk flags tetherd raised while it ran (0 expected).
//! Build everything in release first:
//!
//!     cargo build --release --workspace --bins
//!     target/release/tether-bench --devices 200 --concurrency 16 --seconds 10
//!     target/release/tether-bench --seed 100000 --replicas 2 --concurrency 32 --seconds 30
//!
//! `--ext-authz` also drives Envoy's `envoy.service.auth.v3.Authorization/Check`
//! for `--seconds` after the CheckAccess load, at the same concurrency and with
//! the same device, worker and source-address picks (tether_e2e::bench::ext_authz);
//! `--no-presence` skips the presence phase (issuing, signing and answering).
//! tests/bench/gateway.sh runs the set of issue #17's figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tether_e2e::Server;
use tether_e2e::bench::load::{self, Answerer, Ask, Pick, Stats, Target};
use tether_e2e::bench::{self, Addresses, ext_authz, seed};
use tether_e2e::fixtures::{EnrolledDevice, Org};

const USAGE: &str = "usage: tether-bench [--devices N | --seed N [--templates K] [--answer-devices M] [--seed-only]] \
                     [--replicas R] [--concurrency N] [--seconds N] [--answers-per-device N] [--no-presence] \
                     [--ext-authz]";

struct Options {
    devices: u64,
    seed: u64,
    templates: u64,
    answer_devices: u64,
    seed_only: bool,
    replicas: usize,
    concurrency: usize,
    seconds: u64,
    answers_per_device: usize,
    no_presence: bool,
    ext_authz: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        devices: 200,
        seed: 0,
        templates: 64,
        answer_devices: 1000,
        seed_only: false,
        replicas: 1,
        concurrency: 16,
        seconds: 10,
        answers_per_device: 10,
        no_presence: false,
        ext_authz: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let switch = match args[i].as_str() {
            "--seed-only" => Some(&mut o.seed_only),
            "--ext-authz" => Some(&mut o.ext_authz),
            "--no-presence" => Some(&mut o.no_presence),
            _ => None,
        };
        if let Some(switch) = switch {
            *switch = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--devices", Some(v)) => o.devices = v.max(1),
            ("--seed", Some(v)) => o.seed = v,
            ("--templates", Some(v)) => o.templates = v.max(1),
            ("--answer-devices", Some(v)) => o.answer_devices = v.max(1),
            ("--replicas", Some(v)) => o.replicas = (v as usize).max(1),
            ("--concurrency", Some(v)) => o.concurrency = (v as usize).max(1),
            ("--seconds", Some(v)) => o.seconds = v,
            ("--answers-per-device", Some(v)) => o.answers_per_device = (v as usize).max(1),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

/// Enrolls `count` devices, the `k`th from the address of device `first + k`.
async fn enroll(
    server: &Server,
    org: &Org,
    count: u64,
    prefix: &str,
    first: u64,
    addresses: Addresses,
) -> Vec<EnrolledDevice> {
    let mut devices = Vec::new();
    for i in 0..count {
        devices.push(bench::enroll_from(server, org, &format!("{prefix}-{i}"), addresses.of(first + i)).await);
    }
    devices
}

#[tokio::main]
async fn main() {
    let o = parse_options();
    let backend = match std::env::var("TETHER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => "PostgreSQL",
        _ => "SQLite",
    };
    // Seeded devices are 0..N and the templates follow them; enrolled devices are 0..N.
    let (population, answering) =
        if o.seed > 0 { (o.seed + o.templates, o.answer_devices.min(o.seed)) } else { (o.devices, o.devices) };
    let open_files = bench::open_files_limit();
    let addresses = Addresses::plan(population, answering, open_files).unwrap_or_else(|e| {
        eprintln!("tether-bench: {e}");
        std::process::exit(2);
    });
    if addresses.share() > 1 {
        eprintln!(
            "open-files limit {open_files}: {} devices share each source address (and answering connection)",
            addresses.share()
        );
    }
    // A slow scheduler: the benchmark issues its own challenges.
    let mut server = Server::start_with_tick("1h");
    let org = Org::create(&server, "bench").await;
    let started = Instant::now();
    let (answerers, pick): (Vec<Answerer>, Pick) = if o.seed > 0 {
        let templates = enroll(&server, &org, o.templates, "w-template", o.seed, addresses).await;
        eprintln!("enrolled {} template devices in {:.1} s", templates.len(), started.elapsed().as_secs_f64());
        let (seeded, times) = seed::seed(&server.database_url, &org.keys.tenant_id, o.seed, &templates, addresses)
            .await
            .unwrap_or_else(|e| panic!("seeding failed: {e}"));
        eprintln!(
            "seeded {} devices ({} rows) on {backend} in {:.1} s ({:.0} devices/s)",
            o.seed,
            times.rows,
            times.elapsed.as_secs_f64(),
            o.seed as f64 / times.elapsed.as_secs_f64()
        );
        if o.seed_only {
            return;
        }
        // Start again as a deployment would: the risk engine warms up from the seeded day.
        let restarted = Instant::now();
        server.restart();
        eprintln!("tetherd restarted on {} devices in {:.1} s", o.seed, restarted.elapsed().as_secs_f64());
        // Address slots spread evenly over the population; every device of a sampled slot answers.
        let share = addresses.share();
        let slots = o.seed.div_ceil(share);
        let sampled = answering.div_ceil(share).min(slots);
        let answerers = (0..sampled)
            .flat_map(|j| {
                let slot = j * slots / sampled;
                slot * share..((slot + 1) * share).min(o.seed)
            })
            .map(|i| Answerer {
                device_id: seed::device_id(i),
                credential_id: seed::credential_id(i),
                auth: seeded.authenticator(i),
                address: addresses.of(i),
            })
            .collect();
        let n = o.seed;
        let pick: Pick = Arc::new(move |call| {
            let i = load::spread(call, n);
            Target { worker: seed::worker_id(i), device: seed::device_id(i), source_ip: addresses.of(i) }
        });
        (answerers, pick)
    } else {
        let devices = enroll(&server, &org, o.devices, "w", 0, addresses).await;
        eprintln!("enrolled {} devices in {:.1} s", devices.len(), started.elapsed().as_secs_f64());
        let ids: Vec<(String, String)> = devices.iter().map(|d| (d.worker.clone(), d.device_id.clone())).collect();
        let pick: Pick = Arc::new(move |call| {
            let i = call % ids.len() as u64;
            let (worker, device) = ids[i as usize].clone();
            Target { worker, device, source_ip: addresses.of(i) }
        });
        let answerers = (0..)
            .zip(devices)
            .map(|(i, d)| Answerer {
                device_id: d.device_id,
                credential_id: d.credential_id,
                auth: d.auth,
                address: addresses.of(i),
            })
            .collect();
        (answerers, pick)
    };

    let mut replicas = Vec::new();
    for _ in 1..o.replicas {
        let t = Instant::now();
        replicas.push(server.replica());
        eprintln!("replica started in {:.1} s", t.elapsed().as_secs_f64());
    }
    let urls: Vec<String> = std::iter::once(&server).chain(&replicas).map(|s| s.url.clone()).collect();

    let flags_before = bench::flag_counts(&server.database_url).await.unwrap_or_else(|e| panic!("{e}"));
    let presence = if !o.no_presence {
        // Pre-issue and pre-sign, so the measured call is only the server's
        // verification, consumption and recording of each answer.
        let t = Instant::now();
        let signed =
            load::presign(&server.url, &org.keys.admin_key, answerers, o.answers_per_device, o.concurrency).await;
        let total: usize = signed.iter().map(|s| s.answers.len()).sum();
        eprintln!("issued and signed {total} challenges in {:.1} s", t.elapsed().as_secs_f64());
        Some(load::presence(&urls, signed, o.concurrency).await)
    } else {
        None
    };
    let access =
        load::access(&urls, &org.gateway_key, Arc::clone(&pick), o.concurrency, o.seconds, Ask::CheckAccess).await;
    let envoy = if o.ext_authz {
        // A certificate for every device the first `budget` calls name, made before the
        // clock starts; later calls (only if ext_authz outruns CheckAccess by half) repeat
        // those picks.
        let budget = (access.count as u64 * 3 / 2).max(10_000);
        let t = Instant::now();
        let devices: BTreeSet<String> = (0..budget).map(|call| pick(call).device).collect();
        let certificates = ext_authz::certificates(&org.keys.tenant_id, devices.into_iter().collect())
            .unwrap_or_else(|e| panic!("device certificates: {e}"));
        eprintln!(
            "made {} device certificates (for the first {budget} ext_authz calls) in {:.1} s",
            certificates.len(),
            t.elapsed().as_secs_f64()
        );
        let repeat: Pick = Arc::new(move |call| pick(call % budget));
        let ask = Ask::ExtAuthz(Arc::new(certificates));
        Some(load::access(&urls, &org.gateway_key, repeat, o.concurrency, o.seconds, ask).await)
    } else {
        None
    };
    let flags_after = bench::flag_counts(&server.database_url).await.unwrap_or_else(|e| panic!("{e}"));

    println!("\n{population} enrolled devices, {backend}, {} replica(s), concurrency {}\n", o.replicas, o.concurrency);
    println!("| store | devices | replicas | clients | operation | calls | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let setup = |op: &str| {
        vec![
            backend.to_string(),
            population.to_string(),
            o.replicas.to_string(),
            o.concurrency.to_string(),
            op.to_string(),
        ]
    };
    if let Some(presence) = &presence {
        println!("{}", load::row(&setup("presence answer (verify + consume + record)"), presence));
    }
    println!("{}", load::row(&setup("access check (decide + record session)"), &access));
    if let Some(envoy) = &envoy {
        println!("{}", load::row(&setup("ext_authz check (decide + record session)"), envoy));
    }
    if let Some(presence) = &presence {
        report_errors("presence answers", presence);
    }
    report_errors("access checks", &access);
    if let Some(envoy) = &envoy {
        report_errors("ext_authz checks", envoy);
    }
    report_flags(&flags_before, &flags_after);
}

/// How many flags tetherd raised while the benchmark ran (presign, answers,
/// checks), and a WARNING naming them when any was: each is a farm-path
/// evaluation (and audit entry) the figures then include.
fn report_flags(before: &BTreeMap<(String, String), i64>, after: &BTreeMap<(String, String), i64>) {
    let setup: i64 = before.values().sum();
    let raised: Vec<String> = after
        .iter()
        .filter_map(|((kind, severity), n)| {
            let new = n - before.get(&(kind.clone(), severity.clone())).copied().unwrap_or(0);
            (new != 0).then(|| format!("{new} {kind}/{severity}"))
        })
        .collect();
    let during = after.values().sum::<i64>() - setup;
    eprintln!("flags raised during the benchmark: {during} (before it, at enrollment/seeding/warm-up: {setup})");
    if !raised.is_empty() {
        eprintln!(
            "WARNING: tetherd raised {during} flags during the benchmark ({}): part of the population looks like \
             a laptop farm, and the figures include that path",
            raised.join(", ")
        );
    }
}

fn report_errors(what: &str, stats: &Stats) {
    if let Some(first) = &stats.first_error {
        eprintln!("WARNING: {} {what} failed or were denied (not in the figures); first: {first}", stats.errors);
    }
}
