//! Declared worker homes and working hours drive `relocated` and
//! `presence_missed_pattern` live. Loopback /24s stand in for places in a
//! City database the test writes (tests/src/mmdb.rs).

use super::flags_of;
use std::time::{Duration, Instant};
use tether_e2e::bench::enroll_from;
use tether_e2e::fixtures::{EnrolledDevice, Org, prove_presence};
use tether_e2e::mmdb::{self, Writer};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;
use tonic::Code;

const NEW_YORK: &str = "127.0.1";
const LAGOS: &str = "127.0.2";

fn geo_server(dir: &tempfile::TempDir) -> Server {
    let mut city = Writer::new("GeoIP2-City");
    city.insert("127.0.1.0/24", &mmdb::city(40.71, -74.01, 20, "US", "New York", 5_128_581))
        .insert("127.0.2.0/24", &mmdb::city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459));
    city.write(&dir.path().join("city.mmdb"));
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, "[geo]\ncity_mmdb = \"city.mmdb\"\n").unwrap();
    Server::start_with_args(&["--risk-config", config.to_str().unwrap()])
}

async fn upsert(server: &Server, org: &Org, request: pb::UpsertWorkerRequest) -> Result<pb::Worker, tonic::Status> {
    let mut admin = server.admin().await;
    admin.upsert_worker(authed(&org.keys.admin_key, request)).await.map(|r| r.into_inner())
}

fn home_in_new_york(worker: &str) -> pb::UpsertWorkerRequest {
    pb::UpsertWorkerRequest {
        external_id: worker.into(),
        display_name: format!("Worker {worker}"),
        home: Some(pb::WorkerHome { lat: 40.73, lon: -73.99, country: "us".into() }),
        ..Default::default()
    }
}

async fn check_from(server: &Server, org: &Org, device: &EnrolledDevice, ip: &str) -> pb::CheckAccessResponse {
    let mut access = server.access().await;
    let request = pb::CheckAccessRequest {
        worker_external_id: device.worker.clone(),
        device_id: device.device_id.clone(),
        credential_id: String::new(),
        source_ip: ip.into(),
        gateway_id: "vpn-1".into(),
        ..Default::default()
    };
    access.check_access(authed(&org.gateway_key, request)).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_worker_far_from_the_declared_home_is_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let server = geo_server(&dir);
    let org = Org::create(&server, "acme").await;
    for worker in ["w-home", "w-away"] {
        let declared = upsert(&server, &org, home_in_new_york(worker)).await.unwrap();
        assert_eq!(declared.home.as_ref().unwrap().country, "US", "normalized");
    }
    let mut home = org.enrolled_device(&server, "w-home").await;
    let mut away = org.enrolled_device(&server, "w-away").await;
    prove_presence(&server, &mut home).await;
    prove_presence(&server, &mut away).await;

    check_from(&server, &org, &home, &format!("{NEW_YORK}.10")).await;
    assert!(flags_of(&server, &org, &home.device_id, "relocated").await.is_empty(), "at home");

    let decision = check_from(&server, &org, &away, &format!("{LAGOS}.10")).await;
    assert_eq!(decision.decision, pb::Decision::Allow as i32, "review is reported, not enforced");
    let relocated = flags_of(&server, &org, &away.device_id, "relocated").await;
    assert_eq!(relocated.len(), 1, "{relocated:?}");
    let evidence: serde_json::Value = serde_json::from_str(&relocated[0].evidence_json).unwrap();
    assert_eq!(evidence["home"]["country"], "US", "{evidence}");
    assert_eq!(evidence["location"]["country"], "NG", "{evidence}");
    assert!(evidence["distance_km"].as_f64().unwrap() > 8000.0, "{evidence}");

    // Clearing the declaration stops the signal (the laptop enrolled from 127.0.0.1, which no
    // database locates, so there is no enrollment home to fall back to).
    upsert(
        &server,
        &org,
        pb::UpsertWorkerRequest { external_id: "w-home".into(), clear_home: true, ..Default::default() },
    )
    .await
    .unwrap();
    check_from(&server, &org, &home, &format!("{LAGOS}.11")).await;
    assert!(flags_of(&server, &org, &home.device_id, "relocated").await.is_empty(), "no home, no relocation");
}

/// With no declared home, where the worker's laptop enrolled stands in for
/// one, also after a restart that finds the enrollment gone from the risk
/// log (past its horizon): the store hands the enrollment's address back.
#[tokio::test]
async fn without_a_declared_home_the_enrollment_place_stands_in_and_outlives_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = geo_server(&dir);
    let org = Org::create(&server, "acme").await;
    let in_new_york = |host: u8| format!("{NEW_YORK}.{host}").parse().unwrap();
    let mut first = enroll_from(&server, &org, "w-first", in_new_york(20)).await;
    let mut later = enroll_from(&server, &org, "w-later", in_new_york(21)).await;
    prove_presence(&server, &mut first).await;
    prove_presence(&server, &mut later).await;

    check_from(&server, &org, &first, &format!("{NEW_YORK}.30")).await;
    assert!(flags_of(&server, &org, &first.device_id, "relocated").await.is_empty(), "where it enrolled");
    check_from(&server, &org, &first, &format!("{LAGOS}.30")).await;
    let relocated = flags_of(&server, &org, &first.device_id, "relocated").await;
    assert_eq!(relocated.len(), 1, "{relocated:?}");
    let evidence: serde_json::Value = serde_json::from_str(&relocated[0].evidence_json).unwrap();
    assert_eq!(evidence["home_source"], "enrollment", "{evidence}");
    assert_eq!(evidence["home"]["country"], "US", "{evidence}");

    // The log loses the enrollments; the credentials keep their address.
    server.stop();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url).await.unwrap();
    sqlx::query("DELETE FROM risk_events").execute(&pool).await.unwrap();
    pool.close().await;
    server.restart();
    check_from(&server, &org, &later, &format!("{LAGOS}.31")).await;
    let relocated = flags_of(&server, &org, &later.device_id, "relocated").await;
    assert_eq!(relocated.len(), 1, "the enrollment home must survive the log: {relocated:?}");
    let evidence: serde_json::Value = serde_json::from_str(&relocated[0].evidence_json).unwrap();
    assert_eq!(evidence["home_source"], "enrollment", "{evidence}");

    // A declared home wins over the enrollment's.
    upsert(
        &server,
        &org,
        pb::UpsertWorkerRequest {
            external_id: "w-later".into(),
            home: Some(pb::WorkerHome { lat: 6.45, lon: 3.39, country: "NG".into() }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut lagos_device = later;
    // (The worker's enrollment home stays New York: the earliest credential enrolled there.)
    let in_lagos = format!("{LAGOS}.22").parse().unwrap();
    lagos_device.device_id = enroll_from(&server, &org, "w-later", in_lagos).await.device_id;
    check_from(&server, &org, &lagos_device, &format!("{LAGOS}.32")).await;
    assert!(
        flags_of(&server, &org, &lagos_device.device_id, "relocated").await.is_empty(),
        "at the declared home in Lagos"
    );
}

#[tokio::test]
async fn declarations_are_validated_audited_and_listed() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    let bad = |f: fn(&mut pb::UpsertWorkerRequest)| {
        let mut r = home_in_new_york("w-bad");
        f(&mut r);
        r
    };
    for (request, field) in [
        (bad(|r| r.home.as_mut().unwrap().lat = 91.0), "home.lat"),
        (bad(|r| r.home.as_mut().unwrap().lon = -200.0), "home.lon"),
        (bad(|r| r.home.as_mut().unwrap().country = "USA".into()), "home.country"),
        (
            bad(|r| {
                r.working_hours = Some(pb::WorkingHours { schedule: "weekdays 9-5".into(), timezone: "UTC".into() })
            }),
            "working_hours.schedule",
        ),
        (
            bad(|r| {
                r.working_hours = Some(pb::WorkingHours {
                    schedule: "Mon-Fri 09:00-17:00".into(),
                    timezone: "Europe/Atlantis".into(),
                })
            }),
            "working_hours.timezone",
        ),
    ] {
        let err = upsert(&server, &org, request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {}", err.message());
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    // Nothing half-written: the worker of the rejected requests does not exist.
    let mut admin = server.admin().await;
    let listed = admin
        .list_workers(authed(&org.keys.admin_key, pb::ListWorkersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert!(listed.iter().all(|w| w.external_id != "w-bad"), "{listed:?}");

    // The CLI declares, shows and clears.
    let env = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.keys.admin_key.as_str())];
    let tether = |args: &[&str]| {
        let out = run_bin("tether", &[&["--output", "json"], args].concat(), &env);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let shown = tether(&[
        "workers",
        "upsert",
        "--id",
        "w-ada",
        "--name",
        "Ada",
        "--home-lat",
        "52.52",
        "--home-lon",
        "13.405",
        "--home-country",
        "DE",
        "--working-hours",
        "Mon-Fri 09:00-17:00",
        "--timezone",
        "Europe/Berlin",
    ]);
    assert_eq!(shown["home"]["country"], "DE", "{shown}");
    assert_eq!(shown["working_hours"]["timezone"], "Europe/Berlin", "{shown}");
    let renamed_only = tether(&["workers", "upsert", "--id", "w-ada", "--home-lat", "-33.87", "--home-lon", "151.21"]);
    assert_eq!(renamed_only["display_name"], "Ada", "the name is kept: {renamed_only}");
    assert_eq!(renamed_only["home"]["lat"], -33.87, "{renamed_only}");
    assert_eq!(renamed_only["working_hours"]["schedule"], "Mon-Fri 09:00-17:00", "hours are kept: {renamed_only}");
    let list = tether(&["workers", "list"]);
    let ada = list["workers"].as_array().unwrap().iter().find(|w| w["external_id"] == "w-ada").unwrap().clone();
    assert_eq!(ada["working_hours"]["schedule"], "Mon-Fri 09:00-17:00", "{ada}");
    let cleared = tether(&["workers", "upsert", "--id", "w-ada", "--clear-working-hours"]);
    assert!(cleared["working_hours"].is_null(), "{cleared}");
    let out = run_bin(
        "tether",
        &["workers", "upsert", "--id", "w-ada", "--working-hours", "Mon-Fri 9-5", "--timezone", "UTC"],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("working_hours.schedule"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut reports = server.reports().await;
    let audit = reports
        .list_audit_log(authed(&org.keys.admin_key, pb::ListAuditLogRequest { after_seq: 0, page_size: 1000 }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let declared = audit
        .iter()
        .find(|e| e.action == "worker.upserted" && e.target == "w-ada")
        .expect("an audit entry for the declaration");
    assert!(declared.details_json.contains("Europe/Berlin"), "{}", declared.details_json);
}

/// Waits until `kind` is raised on the device, or gives up after `limit`.
async fn wait_for_flag(server: &Server, org: &Org, device_id: &str, kind: &str, limit: Duration) -> Vec<pb::Flag> {
    let start = Instant::now();
    loop {
        let found = flags_of(server, org, device_id, kind).await;
        if !found.is_empty() || start.elapsed() > limit {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Missed challenges count only inside the declared hours.
#[tokio::test]
async fn missed_presence_counts_inside_the_declared_working_hours_only() {
    let server = Server::start();
    let org = Org::create(&server, "acme").await;
    // Now is always inside "every day, all day"; the hour twelve hours from now never is.
    let utc_hour = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600) % 24;
    let off = (utc_hour + 12) % 24;
    for (worker, schedule) in [
        ("w-on-shift", "Mon-Sun 00:00-24:00".to_string()),
        ("w-off-shift", format!("Mon-Sun {off:02}:00-{:02}:00", off + 1)),
    ] {
        let mut request = home_in_new_york(worker);
        request.home = None;
        request.working_hours = Some(pb::WorkingHours { schedule, timezone: "UTC".into() });
        upsert(&server, &org, request).await.unwrap();
    }
    let on = org.enrolled_device(&server, "w-on-shift").await;
    let off_device = org.enrolled_device(&server, "w-off-shift").await;
    // A challenge every second with one second to answer; nobody answers.
    org.update_policy(
        &server,
        pb::UpdatePolicyRequest {
            presence_interval_seconds: Some(1),
            challenge_deadline_seconds: Some(1),
            ..Default::default()
        },
    )
    .await;
    let flagged = wait_for_flag(&server, &org, &on.device_id, "presence_missed_pattern", Duration::from_secs(20)).await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    let evidence: serde_json::Value = serde_json::from_str(&flagged[0].evidence_json).unwrap();
    assert_eq!(evidence["working_hours_declared"], true, "{evidence}");
    assert_eq!(evidence["working_hours"], "Mon-Sun 00:00-24:00 (UTC)", "{evidence}");
    // The off-shift device missed as many (or more, it enrolled later but shares the schedule).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(flags_of(&server, &org, &off_device.device_id, "presence_missed_pattern").await.is_empty());
}
