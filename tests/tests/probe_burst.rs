//! `presence_burst` provoked by probe rounds, end to end: two employers'
//! laptops behind one (loopback) egress form a cluster; tetherd challenges
//! all of them at once, `[probes] rounds` times, `interval_secs` apart.
//! One person answering for all of them (one after another, running out of
//! time in the last round) raises `presence_burst`; the same laptops answered
//! by their own people, together, do not. Timing is scaled down by the risk
//! configuration. SQLite by default; PostgreSQL with TETHER_TEST_POSTGRES_URL.

use sqlx::Row;
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{EnrolledDevice, Org, answer_json, sign};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

const ROUNDS: usize = 3;
const INTERVAL_MS: i64 = 10_000;
const DEADLINE_MS: i64 = 6_000;
/// A round is judged 8 s after issue; answers 0.5–4 s apart are serialized.
const CONFIG: &str = "[presence_burst]\nround_close_secs = 8\nmin_gap_secs = 0.5\nmax_gap_secs = 4.0\n\
                      min_rounds = 3\n[probes]\nrounds = 3\ninterval_secs = 10\ndeadline_secs = 6\n";
/// What the farm leaves between two answers.
const FARM_GAP: Duration = Duration::from_millis(1_000);

fn start(dir: &std::path::Path) -> Server {
    let path = dir.join("risk.toml");
    std::fs::write(&path, CONFIG).unwrap();
    Server::start_with_args(&["--risk-config", path.to_str().unwrap()])
}

struct Cluster {
    alpha: Org,
    beta: Org,
    /// Three of alpha's laptops, then beta's: its enrollment makes the cluster cross-tenant.
    devices: Vec<EnrolledDevice>,
}

impl Cluster {
    async fn form(server: &Server) -> Cluster {
        let alpha = Org::create(server, "alpha").await;
        let beta = Org::create(server, "beta").await;
        let mut devices = Vec::new();
        for i in 0..3 {
            devices.push(alpha.enrolled_device(server, &format!("alpha-w{i}")).await);
        }
        devices.push(beta.enrolled_device(server, "beta-w0").await);
        Cluster { alpha, beta, devices }
    }

    fn org(&self, device: &EnrolledDevice) -> &Org {
        if device.worker.starts_with("alpha") { &self.alpha } else { &self.beta }
    }
}

async fn query(server: &Server, sql: &str) -> Vec<sqlx::any::AnyRow> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// The probe challenge of `round` (issued after `after_ms`) for every device, polled as an agent would.
async fn round_challenges(server: &Server, devices: &[EnrolledDevice], after_ms: i64) -> Vec<pb::PresenceChallenge> {
    let start = Instant::now();
    let mut found: Vec<Option<pb::PresenceChallenge>> = vec![None; devices.len()];
    while found.iter().any(Option::is_none) {
        assert!(start.elapsed() < Duration::from_millis(INTERVAL_MS as u64 + 5_000), "no probe round arrived");
        for (slot, device) in found.iter_mut().zip(devices) {
            if slot.is_some() {
                continue;
            }
            let mut presence = server.presence().await;
            let request = pb::PollChallengesRequest { credential_id: device.credential_id.clone() };
            let pending = presence.poll_challenges(request).await.unwrap().into_inner().challenges;
            // Probe challenges carry the configured deadline; scheduled ones the tenant's.
            *slot = pending
                .into_iter()
                .find(|c| c.issued_at_ms > after_ms && c.deadline_ms - c.issued_at_ms == DEADLINE_MS);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found.into_iter().flatten().collect()
}

async fn answer(server: &Server, challenge: &pb::PresenceChallenge, device: &mut EnrolledDevice) {
    let json = sign(challenge, &mut device.auth);
    let answered = answer_json(server, &challenge.challenge_id, json).await.unwrap();
    assert_eq!(answered.outcome, pb::PresenceOutcome::Ok as i32);
}

async fn bursts(server: &Server, cluster: &Cluster, device: &EnrolledDevice) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device.device_id.clone(), ..Default::default() };
    let flags = reports.list_flags(authed(&cluster.org(device).analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == "presence_burst").collect()
}

/// Every round went out once, `interval_secs` apart, to every member with the
/// configured deadline. Returns the rounds' issue times.
async fn assert_rounds_as_configured(server: &Server, cluster: &Cluster) -> Vec<i64> {
    let rounds =
        query(server, "SELECT due_at_ms, issued_at_ms, challenges FROM risk_probe_rounds ORDER BY round_no").await;
    assert_eq!(rounds.len(), ROUNDS, "one probe, `rounds` rounds");
    let due: Vec<i64> = rounds.iter().map(|r| r.get::<i64, _>("due_at_ms")).collect();
    let issued: Vec<i64> = rounds.iter().map(|r| r.get::<Option<i64>, _>("issued_at_ms").expect("issued")).collect();
    assert!(rounds.iter().all(|r| r.get::<i64, _>("challenges") == 4), "every member challenged in every round");
    assert!(due.windows(2).all(|w| w[1] - w[0] == INTERVAL_MS), "rounds are interval_secs apart: {due:?}");
    // Issued by a scheduler tick (200 ms here) once due, never early.
    assert!(due.iter().zip(&issued).all(|(d, i)| (0..2_000).contains(&(i - d))), "{due:?} {issued:?}");
    let challenges =
        query(server, "SELECT device_id, issued_at_ms, deadline_ms FROM challenges WHERE reason = 'probe'").await;
    assert_eq!(challenges.len(), ROUNDS * cluster.devices.len(), "each round once, across replicas and restarts");
    for device in &cluster.devices {
        let mine: Vec<i64> = challenges
            .iter()
            .filter(|r| r.get::<String, _>("device_id") == device.device_id)
            .map(|r| r.get::<i64, _>("issued_at_ms"))
            .collect();
        assert_eq!(mine.len(), ROUNDS, "{}", device.worker);
    }
    for r in &challenges {
        assert_eq!(r.get::<i64, _>("deadline_ms") - r.get::<i64, _>("issued_at_ms"), DEADLINE_MS);
        assert!(issued.contains(&r.get::<i64, _>("issued_at_ms")), "every member of a round challenged at once");
    }
    issued
}

#[tokio::test]
async fn one_person_answering_every_probe_round_in_turn_is_a_presence_burst() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let b = a.replica(); // both replicas' schedulers are due to issue every round
    let mut cluster = Cluster::form(&a).await;
    let mut after = 0;
    for round in 0..ROUNDS {
        let challenges = round_challenges(&a, &cluster.devices, after).await;
        after = challenges[0].issued_at_ms;
        // The last round: two laptops answered, then the deadline runs out on the other two.
        let reach = if round == ROUNDS - 1 { 2 } else { cluster.devices.len() };
        for (i, (challenge, device)) in challenges.iter().zip(cluster.devices.iter_mut()).take(reach).enumerate() {
            if i > 0 {
                tokio::time::sleep(FARM_GAP).await;
            }
            answer(if i % 2 == 0 { &a } else { &b }, challenge, device).await;
        }
    }
    let issued = assert_rounds_as_configured(&a, &cluster).await;

    // Judged once the last round closes (no later answer needed), by either replica, stored once.
    let start = Instant::now();
    let mut flagged = Vec::new();
    for device in &cluster.devices {
        loop {
            let found = bursts(&b, &cluster, device).await;
            if !found.is_empty() {
                flagged.push(found);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no presence_burst for {}", device.worker);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for flags in &flagged {
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].severity, pb::FlagSeverity::High as i32);
    }
    let evidence: serde_json::Value = serde_json::from_str(&flagged[0][0].evidence_json).unwrap();
    assert_eq!(evidence["serialized_rounds"], 3, "{evidence}");
    assert_eq!(evidence["counted_rounds"], 3, "{evidence}");
    let named: Vec<String> = issued.iter().map(|t| tether_risk::event::format_time(*t)).collect();
    assert_eq!(evidence["serialized_rounds_issued_at"], serde_json::json!(named), "the probe rounds: {evidence}");
    let last = &evidence["recent_rounds"][0];
    assert_eq!(last["answers"].as_array().map(Vec::len), Some(2), "{evidence}");
    // alpha's analyst sees its own laptop by id and beta's redacted.
    let missed = last["missed"].as_array().cloned().unwrap_or_default();
    assert_eq!(missed.len(), 2, "the misses count in the round: {evidence}");
    assert_eq!(missed[0], cluster.devices[2].device_id.as_str(), "{evidence}");
    let audit = query(
        &a,
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'flag.raised' AND details_json LIKE '%presence_burst%'",
    )
    .await;
    assert_eq!(audit[0].get::<i64, _>("n"), 4, "one audit entry per member");
}

#[tokio::test]
async fn laptops_answered_by_their_own_people_together_are_not_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let mut cluster = Cluster::form(&server).await;
    let mut after = 0;
    for round in 0..ROUNDS {
        let challenges = round_challenges(&server, &cluster.devices, after).await;
        after = challenges[0].issued_at_ms;
        let answers = challenges.iter().zip(cluster.devices.iter_mut()).map(|(c, d)| answer(&server, c, d));
        futures_join_all(answers).await;
        if round == 0 {
            // The schedule is in the database: a restart between rounds loses none and repeats none.
            server.restart();
        }
    }
    let issued = assert_rounds_as_configured(&server, &cluster).await;
    // Past the moment the last round is judged, with a margin of several scheduler ticks.
    let judged = issued[ROUNDS - 1] + 8_000 + 2_000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(u64::try_from(judged - now).unwrap_or(0))).await;
    for device in &cluster.devices {
        assert!(bursts(&server, &cluster, device).await.is_empty(), "{}", device.worker);
    }
}

/// Runs the futures concurrently on this task (join_all without another dependency).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut slots: Vec<Option<std::pin::Pin<Box<F>>>> = futures.map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        for slot in slots.iter_mut() {
            if let Some(f) = slot
                && f.as_mut().poll(cx).is_ready()
            {
                *slot = None;
            }
        }
        if slots.iter().all(Option::is_none) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
}
