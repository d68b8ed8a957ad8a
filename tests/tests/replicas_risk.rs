//! Risk state shared by replicas: two or three tetherd processes on one
//! database (one SQLite file, or PostgreSQL with TETHER_TEST_POSTGRES_URL),
//! each handling part of the traffic. A cluster or a journey that no single
//! replica saw whole is still detected, raised once, and seen by every
//! replica's analysts and gateways; a replica started later picks it up.

use sqlx::Row;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use tether_e2e::fixtures::{EnrolledDevice, Org, deny_codes, is_allow, prove_presence};
use tether_e2e::mmdb::{self, Writer};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

/// Four workers of two tenants behind one address are `high`; fewer, or one
/// tenant, raise nothing — so no replica's own half of the traffic is enough.
const EGRESS: &str =
    "[shared_egress]\nreview_devices = 4\nreview_tenants = 3\nhigh_devices = 4\nhigh_min_tenants = 2\n";

fn start(dir: &Path, config: &str) -> Server {
    let path = dir.join("risk.toml");
    std::fs::write(&path, config).unwrap();
    Server::start_with_args(&["--risk-config", path.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"])
}

async fn flags_via(server: &Server, org: &Org, device_id: &str, kind: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { device_id: device_id.into(), ..Default::default() };
    let flags = reports.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == kind).collect()
}

async fn query_i64(server: &Server, sql: &str) -> Vec<(String, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect()
}

/// How many events this replica's engine has evaluated (its metrics).
fn evaluated(server: &Server) -> i64 {
    let addr = server.metrics_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .filter(|l| {
            l.starts_with("tether_verification_duration_seconds_count{") && l.contains(r#"step="risk.evaluate""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// Waits until every replica's engine has evaluated every event in the shared log.
async fn converged(replicas: &[&Server]) -> i64 {
    let start = Instant::now();
    loop {
        let total = query_i64(replicas[0], "SELECT 'all', COUNT(*) FROM risk_events").await[0].1;
        let seen: Vec<i64> = replicas.iter().map(|r| evaluated(r)).collect();
        if seen.iter().all(|n| *n == total) {
            return total;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "replicas did not converge: {seen:?} of {total}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn present(server: &Server, org: &Org, worker: &str) -> EnrolledDevice {
    let mut device = org.enrolled_device(server, worker).await;
    prove_presence(server, &mut device).await;
    device
}

#[tokio::test]
async fn a_cluster_split_across_replicas_is_flagged_once_and_seen_by_all() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), EGRESS);
    let b = a.replica();
    let alpha = Org::create(&a, "alpha").await;
    let beta = Org::create(&a, "beta").await;
    // Each replica handles one device of each tenant: two workers, no flag on its own.
    let alpha_a = present(&a, &alpha, "alpha-w0").await;
    let beta_a = present(&a, &beta, "beta-w0").await;
    let alpha_b = present(&b, &alpha, "alpha-w1").await;
    let beta_b = present(&b, &beta, "beta-w1").await;
    let members = [(&alpha, &alpha_a), (&beta, &beta_a), (&alpha, &alpha_b), (&beta, &beta_b)];

    // Both engines evaluate all of it; the one that raises second finds it raised.
    converged(&[&a, &b]).await;
    for replica in [&a, &b] {
        for (org, device) in members {
            let flagged = flags_via(replica, org, &device.device_id, "shared_egress").await;
            assert_eq!(flagged.len(), 1, "{}: {flagged:?}", device.worker);
            assert_eq!(flagged[0].severity, pb::FlagSeverity::High as i32);
            let evidence: serde_json::Value = serde_json::from_str(&flagged[0].evidence_json).unwrap();
            assert_eq!((evidence["workers"].as_u64(), evidence["tenants"].as_u64()), (Some(4), Some(2)), "{evidence}");
        }
    }
    // One probe round, issued by one replica: each member challenged once.
    let probes =
        query_i64(&a, "SELECT device_id, COUNT(*) FROM challenges WHERE reason = 'probe' GROUP BY device_id").await;
    assert_eq!(probes.len(), 4, "{probes:?}");
    assert!(probes.iter().all(|(_, n)| *n == 1), "a probe round was issued twice: {probes:?}");
    let audit =
        query_i64(&a, "SELECT action, COUNT(*) FROM audit_log WHERE action = 'flag.raised' GROUP BY action").await;
    assert_eq!(audit, vec![("flag.raised".to_string(), 4)], "one audit entry per stored flag");

    // Gateways asking either replica are denied (an open high flag), for both employers.
    for (replica, org, device) in [(&a, &alpha, &alpha_b), (&b, &beta, &beta_a), (&b, &alpha, &alpha_a)] {
        let decision = org.check(replica, &device.worker, &device.device_id).await;
        assert!(!is_allow(&decision), "{:?}", decision.reasons);
        assert!(deny_codes(&decision).contains(&pb::DenyReason::OpenHighSeverityFlags), "{:?}", decision.reasons);
    }

    // A third replica started now warms up from the shared log: a third
    // employer's laptop joining through it is flagged once, and nobody else again.
    let c = a.replica();
    let gamma = Org::create(&a, "gamma").await;
    let gamma_c = present(&c, &gamma, "gamma-w0").await;
    converged(&[&a, &b]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let flagged = flags_via(&a, &gamma, &gamma_c.device_id, "shared_egress").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    let evidence: serde_json::Value = serde_json::from_str(&flagged[0].evidence_json).unwrap();
    assert_eq!((evidence["workers"].as_u64(), evidence["tenants"].as_u64()), (Some(5), Some(3)), "{evidence}");
    for (org, device) in members {
        assert_eq!(flags_via(&c, org, &device.device_id, "shared_egress").await.len(), 1, "{}", device.worker);
    }
    let probes = query_i64(&a, "SELECT 'all', COUNT(*) FROM challenges WHERE reason = 'probe'").await;
    assert_eq!(probes[0].1, 4, "the cluster was already probed today");
    let decision = gamma.check(&c, "gamma-w0", &gamma_c.device_id).await;
    assert!(deny_codes(&decision).contains(&pb::DenyReason::OpenHighSeverityFlags), "{:?}", decision.reasons);
}

const NEW_YORK: &str = "127.0.1";
const LAGOS: &str = "127.0.2";

async fn check_from(server: &Server, org: &Org, device: &EnrolledDevice, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        worker_external_id: device.worker.clone(),
        device_id: device.device_id.clone(),
        source_ip: ip.into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    };
    access.check_access(authed(&org.gateway_key, request)).await.unwrap().into_inner()
}

#[tokio::test]
async fn travel_history_recorded_by_one_replica_is_seen_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut city = Writer::new("GeoIP2-City");
    city.insert("127.0.1.0/24", &mmdb::city(40.71, -74.01, 20, "US", "New York", 5_128_581))
        .insert("127.0.2.0/24", &mmdb::city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459))
        .alias_ipv4_mapped();
    city.write(&dir.path().join("city.mmdb"));
    let a = start(dir.path(), "[geo]\ncity_mmdb = \"city.mmdb\"\n");
    let b = a.replica();
    let org = Org::create(&a, "acme").await;
    let laptop = present(&a, &org, "w-ada").await;
    let second = present(&b, &org, "w-ada").await;

    // New York through replica A, Lagos minutes later through replica B.
    assert!(is_allow(&check_from(&a, &org, &laptop, &format!("{NEW_YORK}.10")).await));
    let jump = check_from(&b, &org, &second, &format!("{LAGOS}.10")).await;
    assert!(is_allow(&jump), "review is reported, not enforced: {:?}", jump.reasons);

    converged(&[&a, &b]).await;
    for replica in [&a, &b] {
        let travel = flags_via(replica, &org, &second.device_id, "impossible_travel").await;
        assert_eq!(travel.len(), 1, "{travel:?}");
        let e: serde_json::Value = serde_json::from_str(&travel[0].evidence_json).unwrap();
        assert_eq!((e["from"]["country"].as_str(), e["to"]["country"].as_str()), (Some("US"), Some("NG")), "{e}");
        assert!(flags_via(replica, &org, &laptop.device_id, "impossible_travel").await.is_empty());
    }
    // Replica A places the worker in Lagos too: the laptop, whose own last
    // sighting (through A) was New York, checking from New York again is a
    // jump for the worker — which A knows only from B's event.
    let back = check_from(&a, &org, &laptop, &format!("{NEW_YORK}.11")).await;
    assert!(is_allow(&back), "{:?}", back.reasons);
    converged(&[&a, &b]).await;
    let travel = flags_via(&b, &org, &laptop.device_id, "impossible_travel").await;
    assert_eq!(travel.len(), 1, "{travel:?}");
    let e: serde_json::Value = serde_json::from_str(&travel[0].evidence_json).unwrap();
    assert_eq!((e["scope"].as_str(), e["from"]["country"].as_str()), (Some("worker"), Some("NG")), "{e}");
    let all =
        query_i64(&a, "SELECT device_id, COUNT(*) FROM flags WHERE kind = 'impossible_travel' GROUP BY device_id")
            .await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|(_, n)| *n == 1), "raised twice: {all:?}");
}
