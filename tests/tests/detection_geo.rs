//! Geo and network signals live in tetherd, located by MaxMind-format
//! databases the test writes itself (tests/src/mmdb.rs) and names in a risk
//! configuration (`tetherd serve --risk-config`). Loopback /24s stand in for
//! places: `CheckAccessRequest.source_ip` is the client address the gateway
//! reports, so a check can come "from" any of them.

use std::path::PathBuf;
use tether_e2e::fixtures::{EnrolledDevice, Org, is_allow, prove_presence};
use tether_e2e::mmdb::{self, Writer};
use tether_e2e::{Server, authed};
use tether_proto::v1 as pb;

const NEW_YORK: &str = "127.0.1";
const LAGOS: &str = "127.0.2";
const HOSTING: &str = "127.0.3"; // AS64501, classed `hosting` in the configuration

/// City and ASN databases plus a risk configuration naming them relatively.
struct GeoSetup {
    dir: tempfile::TempDir,
}

impl GeoSetup {
    fn new() -> GeoSetup {
        let dir = tempfile::tempdir().unwrap();
        let mut city = Writer::new("GeoIP2-City");
        city.insert("127.0.1.0/24", &mmdb::city(40.71, -74.01, 20, "US", "New York", 5_128_581))
            .insert("127.0.2.0/24", &mmdb::city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459))
            .insert("127.0.3.0/24", &mmdb::city(50.11, 8.68, 100, "DE", "Frankfurt am Main", 2_925_533))
            .alias_ipv4_mapped();
        city.write(&dir.path().join("city.mmdb"));
        let mut asn = Writer::new("GeoLite2-ASN");
        asn.insert("127.0.3.0/24", &mmdb::asn(64_501, "Example Hosting GmbH")).alias_ipv4_mapped();
        asn.write(&dir.path().join("asn.mmdb"));
        std::fs::write(
            dir.path().join("risk.toml"),
            "[geo]\ncity_mmdb = \"city.mmdb\"\nasn_mmdb = \"asn.mmdb\"\n\n\
             [[networks]]\nclass = \"hosting\"\nasns = [64501]\n",
        )
        .unwrap();
        GeoSetup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("risk.toml")
    }

    fn start(&self) -> Server {
        Server::start_with_args(&["--risk-config", self.config().to_str().unwrap()])
    }
}

async fn check_from(server: &Server, org: &Org, device: &EnrolledDevice, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    access
        .check_access(authed(
            &org.gateway_key,
            pb::CheckAccessRequest {
                worker_external_id: device.worker.clone(),
                device_id: device.device_id.clone(),
                credential_id: String::new(),
                source_ip: ip.into(),
                gateway_id: "vpn-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The analyst's view: flags of this kind on this worker.
async fn flags_of(server: &Server, org: &Org, worker: &str, kind: &str) -> Vec<pb::Flag> {
    let mut reports = server.reports().await;
    let request = pb::ListFlagsRequest { worker_external_id: worker.into(), ..Default::default() };
    let flags = reports.list_flags(authed(&org.analyst_key, request)).await.unwrap().into_inner().flags;
    flags.into_iter().filter(|f| f.kind == kind).collect()
}

fn evidence(flag: &pb::Flag) -> serde_json::Value {
    serde_json::from_str(&flag.evidence_json).unwrap()
}

async fn ready_device(server: &Server, org: &Org, worker: &str) -> EnrolledDevice {
    let mut device = org.enrolled_device(server, worker).await;
    prove_presence(server, &mut device).await;
    device
}

#[tokio::test]
async fn a_worker_jumping_from_new_york_to_lagos_within_minutes_is_impossible_travel() {
    let geo = GeoSetup::new();
    let server = geo.start();
    let org = Org::create(&server, "acme").await;
    // Two laptops of one worker: the jump is seen across the worker's devices.
    // (One credential in both places within 5 minutes is `clone_suspected` instead.)
    let laptop = ready_device(&server, &org, "w-ada").await;
    let second = ready_device(&server, &org, "w-ada").await;

    let first = check_from(&server, &org, &laptop, &format!("{NEW_YORK}.10")).await;
    assert!(is_allow(&first), "{:?}", first.reasons);
    assert!(flags_of(&server, &org, "w-ada", "impossible_travel").await.is_empty());

    // The IPv4-mapped form, as a dual-stack gateway may report it.
    let jump = check_from(&server, &org, &second, &format!("::ffff:{LAGOS}.10")).await;
    // `review` is reported, not enforced.
    assert!(is_allow(&jump), "{:?}", jump.reasons);

    let travel = flags_of(&server, &org, "w-ada", "impossible_travel").await;
    assert_eq!(travel.len(), 1, "{travel:?}");
    assert_eq!(travel[0].device_id, second.device_id);
    assert_eq!(travel[0].severity, pb::FlagSeverity::Review as i32);
    let e = evidence(&travel[0]);
    assert_eq!(e["scope"], "worker", "{e}");
    assert_eq!(e["from"]["country"], "US", "{e}");
    assert_eq!(e["to"]["country"], "NG", "{e}");
    assert_eq!(e["to"]["ip"], format!("{LAGOS}.10"), "the address is canonicalized: {e}");
    assert!(e["kmh"].as_f64().is_none_or(|kmh| kmh > 805.0), "{e}");
    assert!(e.get("geo_signals").is_none(), "{e}");
}

#[tokio::test]
async fn a_check_from_a_hosting_network_is_anonymized_egress() {
    let geo = GeoSetup::new();
    let server = geo.start();
    let org = Org::create(&server, "acme").await;
    let home = ready_device(&server, &org, "w-bob").await;
    let cloud = ready_device(&server, &org, "w-eve").await;

    check_from(&server, &org, &home, &format!("{NEW_YORK}.20")).await;
    assert!(flags_of(&server, &org, "w-bob", "anonymized_egress").await.is_empty(), "a residential address");

    let decision = check_from(&server, &org, &cloud, &format!("{HOSTING}.20")).await;
    assert!(is_allow(&decision), "review is not enforced: {:?}", decision.reasons);
    let flagged = flags_of(&server, &org, "w-eve", "anonymized_egress").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    let e = evidence(&flagged[0]);
    assert_eq!(e["asn"], 64_501, "{e}");
    assert_eq!(e["network_class"], "hosting", "{e}");
    assert_eq!(e["ip"], format!("{HOSTING}.20"), "{e}");
}

/// Moves this device's recorded access check (and the engine's copy) `hours` into the past.
async fn backdate_sessions(server: &Server, device: &EnrolledDevice, hours: i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    let done = sqlx::query("UPDATE sessions SET at_ms = at_ms - $1 WHERE device_id = $2")
        .bind(hours * 3_600_000)
        .bind(device.device_id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    // The engine's copy, which a restart replays.
    let done = sqlx::query(
        "UPDATE risk_events SET at_ms = at_ms - $1 WHERE device_id = $2 AND event_json LIKE '%\"type\":\"session\"%'",
    )
    .bind(hours * 3_600_000)
    .bind(device.device_id.as_str())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
}

#[tokio::test]
async fn a_trip_that_takes_longer_than_a_flight_is_not_impossible_travel() {
    // tetherd takes times from its clock, so the earlier check is backdated in
    // the database and a restart replays it (the engine is warmed from the
    // last day of recorded sessions).
    let geo = GeoSetup::new();
    let mut server = geo.start();
    let org = Org::create(&server, "acme").await;
    let flyer = ready_device(&server, &org, "w-flyer").await;
    let jumper = ready_device(&server, &org, "w-jumper").await;
    check_from(&server, &org, &flyer, &format!("{NEW_YORK}.30")).await;
    check_from(&server, &org, &jumper, &format!("{NEW_YORK}.31")).await;
    // New York → Lagos is ~8,400 km: 14 h is ~600 km/h, 2 h is ~4,200 km/h.
    backdate_sessions(&server, &flyer, 14).await;
    backdate_sessions(&server, &jumper, 2).await;
    server.restart();

    check_from(&server, &org, &flyer, &format!("{LAGOS}.30")).await;
    check_from(&server, &org, &jumper, &format!("{LAGOS}.31")).await;
    let plausible = flags_of(&server, &org, "w-flyer", "impossible_travel").await;
    assert!(plausible.is_empty(), "{plausible:?}");
    let impossible = flags_of(&server, &org, "w-jumper", "impossible_travel").await;
    assert_eq!(impossible.len(), 1, "the replayed check counts: {impossible:?}");
    let e = evidence(&impossible[0]);
    assert!(e["hours"].as_f64().is_some_and(|h| (1.9..2.1).contains(&h)), "{e}");
    assert!(e["kmh"].as_f64().is_some_and(|kmh| kmh > 805.0), "{e}");
}
