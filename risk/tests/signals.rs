//! Each signal fires on its pattern and stays quiet on its look-alike.

use serde_json::{Value, json};
use tether_risk::event::format_time;
use tether_risk::simulate::SIM_START;
use tether_risk::{Engine, Event, Flag, RiskConfig, Severity};

const NYC: (f64, f64) = (40.71, -74.01);
const LONDON: (f64, f64) = (51.51, -0.13);
const BROOKLYN: (f64, f64) = (40.65, -73.95);

/// RFC 3339 time `secs` seconds after the first Monday of the simulation (10:00 UTC).
fn at(secs: f64) -> String {
    format_time(SIM_START + 10 * 3_600_000 + (secs * 1000.0) as i64)
}

fn geo((lat, lon): (f64, f64), country: &str) -> Value {
    json!({"lat": lat, "lon": lon, "accuracy_km": 10, "country": country, "network_class": "residential"})
}

fn base(kind: &str, secs: f64, tenant: &str, device: &str, ip: &str) -> Value {
    json!({"type": kind, "at": at(secs), "tenant": tenant, "worker": format!("w-{device}"), "device": device, "ip": ip})
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(map), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    v
}

fn enroll(secs: f64, tenant: &str, device: &str, ip: &str, home: (f64, f64)) -> Value {
    with(
        base("enrollment", secs, tenant, device, ip),
        json!({"attested": true, "format": "packed",
        "home": {"lat": home.0, "lon": home.1, "country": "US"}, "geo": geo(home, "US")}),
    )
}

fn answer(secs: f64, issued: f64, tenant: &str, device: &str, ip: &str, extra: Value) -> Value {
    with(
        with(
            base("presence", secs, tenant, device, ip),
            json!({"outcome": "ok", "issued_at": at(issued), "answered_at": at(secs)}),
        ),
        extra,
    )
}

fn run_with(config: RiskConfig, events: &[Value]) -> (Vec<Flag>, Engine) {
    let mut engine = Engine::new(config).expect("valid configuration");
    let mut flags = Vec::new();
    for e in events {
        let event = Event::from_json(&e.to_string()).expect("a valid test event");
        flags.extend(engine.process(&event));
    }
    flags.extend(engine.finish());
    (flags, engine)
}

fn run(events: &[Value]) -> Vec<Flag> {
    run_with(RiskConfig::default(), events).0
}

fn has(flags: &[Flag], kind: &str, device: &str) -> bool {
    flags.iter().any(|f| f.kind.as_str() == kind && f.device == device)
}

fn count(flags: &[Flag], kind: &str) -> usize {
    flags.iter().filter(|f| f.kind.as_str() == kind).count()
}

#[test]
fn unattested_enrollment_is_flagged_and_attested_is_not() {
    let mut bad = base("enrollment", 0.0, "acme", "d1", "203.0.113.7");
    bad = with(bad, json!({"attested": false, "format": "none"}));
    let flags = run(&[bad, enroll(1.0, "acme", "d2", "203.0.113.8", NYC)]);
    assert!(has(&flags, "unattested_hardware", "d1"));
    assert!(!has(&flags, "unattested_hardware", "d2"));
    let f = flags.iter().find(|f| f.device == "d1").expect("flag");
    assert_eq!(f.severity, Severity::Review);
    assert_eq!(f.evidence["format"], "none");
    // No geo anywhere and no database: the evidence says geo signals are off.
    assert!(f.evidence["geo_signals"].as_str().is_some_and(|s| s.starts_with("off")));
}

#[test]
fn counter_regression_is_a_clone_but_zero_counters_are_not() {
    let ip = "198.51.100.4";
    let flags = run(&[
        answer(0.0, -5.0, "acme", "d1", ip, json!({"sign_count": 5})),
        answer(60.0, 55.0, "acme", "d1", ip, json!({"sign_count": 3})),
        answer(0.0, -5.0, "acme", "d2", ip, json!({"sign_count": 0})),
        answer(60.0, 55.0, "acme", "d2", ip, json!({"sign_count": 0})),
    ]);
    assert!(has(&flags, "clone_suspected", "d1"));
    assert!(!has(&flags, "clone_suspected", "d2"));
}

#[test]
fn one_credential_in_two_places_at_once_is_a_clone() {
    let flags = run(&[
        answer(0.0, -5.0, "acme", "d1", "198.51.100.4", json!({"geo": geo(NYC, "US")})),
        answer(60.0, 55.0, "acme", "d1", "203.0.113.9", json!({"geo": geo(LONDON, "GB")})),
    ]);
    assert!(has(&flags, "clone_suspected", "d1"));
}

#[test]
fn impossible_travel_fires_but_a_real_flight_does_not() {
    let hop = |hours: f64, device: &str| {
        vec![
            with(
                base("session", 0.0, "acme", device, "198.51.100.4"),
                json!({"geo": geo(NYC, "US"), "gateway": "vpn-1"}),
            ),
            with(base("session", hours * 3600.0, "acme", device, "203.0.113.9"), json!({"geo": geo(LONDON, "GB")})),
        ]
    };
    let flags = run(&[hop(2.0, "fast"), hop(9.0, "flight")].concat());
    assert!(has(&flags, "impossible_travel", "fast"));
    assert!(!has(&flags, "impossible_travel", "flight"));
    let f = flags.iter().find(|f| f.kind.as_str() == "impossible_travel").expect("flag");
    assert_eq!(f.evidence["max_kmh"], 805.0);
    assert_eq!(f.evidence["from"]["ip"], "198.51.100.4");
}

#[test]
fn accuracy_radii_are_subtracted_before_judging_speed() {
    let coarse = |lat: f64| json!({"lat": lat, "lon": -74.0, "accuracy_km": 200, "country": "US"});
    let flags = run(&[
        with(base("session", 0.0, "acme", "d1", "198.51.100.4"), json!({"geo": coarse(40.0)})),
        with(base("session", 600.0, "acme", "d1", "198.51.100.5"), json!({"geo": coarse(42.7)})),
    ]);
    assert_eq!(count(&flags, "impossible_travel"), 0, "{flags:?}");
}

#[test]
fn relocation_far_from_home_is_flagged_near_home_is_not() {
    let flags = run(&[
        enroll(0.0, "acme", "d1", "198.51.100.4", NYC),
        answer(100.0, 90.0, "acme", "d1", "198.51.100.5", json!({"geo": geo(BROOKLYN, "US")})),
        enroll(0.0, "acme", "d2", "198.51.100.6", NYC),
        answer(100.0, 90.0, "acme", "d2", "203.0.113.9", json!({"geo": geo(LONDON, "GB")})),
    ]);
    assert!(!has(&flags, "relocated", "d1"));
    assert!(has(&flags, "relocated", "d2"));
    let f = flags.iter().find(|f| f.kind.as_str() == "relocated").expect("flag");
    assert_eq!(f.evidence["country_changed"], true);
    assert_eq!(f.evidence["radius_km"], 250.0);
}

#[test]
fn a_declared_home_wins_over_the_enrollment_one_and_clearing_it_falls_back() {
    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    let process = |engine: &mut Engine, e: Value| engine.process(&Event::from_json(&e.to_string()).unwrap());
    // Enrolled in New York without a stated home: New York stands in.
    let mut enrollment = base("enrollment", 0.0, "acme", "d1", "198.51.100.4");
    enrollment = with(enrollment, json!({"attested": true, "format": "packed", "geo": geo(NYC, "US")}));
    process(&mut engine, enrollment);
    let london = |secs: f64| answer(secs, secs - 5.0, "acme", "d1", "203.0.113.9", json!({"geo": geo(LONDON, "GB")}));
    let flags = process(&mut engine, london(100_000.0));
    let relocated = flags.iter().find(|f| f.kind.as_str() == "relocated").expect("relocated from the enrollment");
    assert_eq!(relocated.evidence["home_source"], "enrollment");

    // Declared in London: at home there, whatever the enrollment said.
    let home = tether_risk::event::Home { lat: LONDON.0, lon: LONDON.1, country: Some("GB".into()) };
    engine.declare("acme", "w-d1", Some(&home), None);
    let flags = process(&mut engine, london(300_000.0));
    assert!(!has(&flags, "relocated", "d1"), "{flags:?}");
    let flags = process(
        &mut engine,
        answer(400_000.0, 399_990.0, "acme", "d1", "198.51.100.5", json!({"geo": geo(NYC, "US")})),
    );
    let relocated = flags.iter().find(|f| f.kind.as_str() == "relocated").expect("New York is away from London");
    assert_eq!(relocated.evidence["home_source"], "declared");

    // Cleared: New York, where it enrolled, is home again.
    engine.declare("acme", "w-d1", None, None);
    let flags = process(
        &mut engine,
        answer(500_000.0, 499_990.0, "acme", "d1", "198.51.100.5", json!({"geo": geo(NYC, "US")})),
    );
    assert!(!has(&flags, "relocated", "d1"), "{flags:?}");
}

fn sessions(devices: &[(&str, &str)], ip: &str, extra: Value) -> Vec<Value> {
    devices
        .iter()
        .enumerate()
        .map(|(i, (tenant, device))| with(base("session", i as f64 * 60.0, tenant, device, ip), extra.clone()))
        .collect()
}

/// Presence answers from one address: tetherd saw each device there itself.
fn answers(devices: &[(&str, &str)], ip: &str) -> Vec<Value> {
    devices
        .iter()
        .enumerate()
        .map(|(i, (tenant, device))| {
            // Minutes apart and long after their challenges: no answer burst.
            let secs = i as f64 * 600.0;
            answer(secs, secs - 30.0, tenant, device, ip, json!({}))
        })
        .collect()
}

#[test]
fn shared_egress_across_tenants_is_review_then_high() {
    let three: Vec<(&str, &str)> = vec![("a", "d1"), ("b", "d2"), ("c", "d3")];
    let flags = run(&answers(&three, "198.51.100.10"));
    assert!(flags.iter().any(|f| f.kind.as_str() == "shared_egress" && f.severity == Severity::Review));
    let six: Vec<(&str, &str)> = vec![("a", "d1"), ("b", "d2"), ("c", "d3"), ("a", "d4"), ("b", "d5"), ("c", "d6")];
    let flags = run(&answers(&six, "198.51.100.10"));
    let high: Vec<&Flag> =
        flags.iter().filter(|f| f.kind.as_str() == "shared_egress" && f.severity == Severity::High).collect();
    assert_eq!(high.len(), 6, "every member is flagged");
    assert_eq!(high[0].evidence["members_total"], 6);
    assert_eq!(high[0].evidence["thresholds"]["high_devices"], 6);
}

/// Finding 1 of the adversarial review: tenant "a"'s gateway reports five of its own attested
/// devices at the address tenant "b"'s worker uses. Those are claims "a" controls, so they
/// flag only "a"'s own devices (its own evidence against itself), never "b"'s worker, and
/// they start no probe of "b"'s device.
#[test]
fn another_tenants_gateway_reports_cannot_flag_or_probe_a_worker() {
    let victim_ip = "198.51.100.20";
    let mut events = answers(&[("b", "victim")], victim_ip);
    let framers: Vec<(&str, &str)> = vec![("a", "f1"), ("a", "f2"), ("a", "f3"), ("a", "f4"), ("a", "f5")];
    events.extend(sessions(&framers, victim_ip, json!({})));
    events.extend(answers(&[("b", "victim")], victim_ip).into_iter().map(|e| with(e, json!({"at": at(3600.0)}))));
    let (flags, mut engine) = run_with(RiskConfig::default(), &events);
    assert!(!flags.iter().any(|f| f.device == "victim"), "the victim is not flagged: {flags:?}");
    assert!(engine.take_probe_requests().is_empty(), "no probe of the victim");
    // The same devices *observed* there by tetherd (their own presence answers) do count.
    let mut events = answers(&[("b", "victim")], victim_ip);
    events.extend(
        answers(&framers, victim_ip).into_iter().enumerate().map(|(i, e)| {
            with(e, json!({"at": at(60.0 + i as f64 * 600.0), "issued_at": at(30.0 + i as f64 * 600.0)}))
        }),
    );
    let flags = run(&events);
    assert!(has(&flags, "shared_egress", "victim"), "observed co-location still counts: {flags:?}");
}

/// The same attack through LAN fingerprints: "a"'s devices sign posture reports claiming the
/// Wi-Fi BSSID hash of "b"'s worker's network (a BSSID is broadcast over the air).
#[test]
fn claimed_lan_fingerprints_cannot_flag_another_tenants_worker() {
    let lan = json!({"posture": {"lan": {"wifi_bssid_hash": "c0ffee"}}});
    let mut events = vec![answer(0.0, -30.0, "b", "victim", "198.51.100.30", lan.clone())];
    for (i, device) in ["f1", "f2", "f3", "f4", "f5", "f6"].iter().enumerate() {
        let secs = 600.0 * (i as f64 + 1.0);
        events.push(answer(secs, secs - 30.0, "a", device, &format!("203.0.113.{}", i + 1), lan.clone()));
    }
    let flags = run(&events);
    assert!(!flags.iter().any(|f| f.device == "victim"), "the victim is not flagged: {flags:?}");
}

#[test]
fn ipv6_devices_in_one_slash_64_share_an_egress() {
    let events: Vec<Value> = ["2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2:ffff::1"]
        .iter()
        .zip([("a", "d1"), ("b", "d2"), ("c", "d3")])
        .enumerate()
        .map(|(i, (ip, (t, d)))| answer(i as f64, i as f64 - 30.0, t, d, ip, json!({})))
        .collect();
    let flags = run(&events);
    assert_eq!(count(&flags, "shared_egress"), 3);
    assert_eq!(flags[0].evidence["egress"], "2001:db8:1:2::/64");
}

#[test]
fn an_office_behind_its_registered_nat_is_not_shared_egress() {
    let devices: Vec<(&str, &str)> =
        (1..=8).map(|i| ("acme", ["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"][i - 1])).collect();
    let config = RiskConfig::parse("[[offices]]\ntenant = \"acme\"\ncidrs = [\"198.51.100.0/28\"]\n").expect("config");
    let (flags, _) = run_with(config, &sessions(&devices, "198.51.100.3", json!({})));
    assert_eq!(count(&flags, "shared_egress"), 0, "{flags:?}");
    // Unregistered, one tenant only: information, never review.
    let flags = run(&sessions(&devices, "198.51.100.3", json!({})));
    assert!(flags.iter().filter(|f| f.kind.as_str() == "shared_egress").all(|f| f.severity == Severity::Info));
}

#[test]
fn corporate_vpn_is_neither_shared_egress_nor_anonymized_but_an_anonymizer_is() {
    let six: Vec<(&str, &str)> = vec![("a", "d1"), ("b", "d2"), ("c", "d3"), ("d", "d4"), ("e", "d5"), ("f", "d6")];
    let config = RiskConfig::parse(
        r#"{"networks": [{"class": "corporate_vpn", "cidrs": ["192.0.2.0/24"]}, {"class": "anonymizer", "asns": [9009]}]}"#,
    )
    .expect("config");
    let vpn_geo = json!({"geo": {"lat": 50.1, "lon": 8.7, "accuracy_km": 50, "country": "DE"}});
    let (flags, _) = run_with(config.clone(), &sessions(&six, "192.0.2.10", vpn_geo));
    assert!(flags.is_empty(), "{flags:?}");
    let anon = json!({"geo": {"lat": 50.1, "lon": 8.7, "country": "DE", "asn": 9009}});
    let (flags, _) = run_with(config, &sessions(&six[..1], "203.0.113.50", anon));
    assert!(has(&flags, "anonymized_egress", "d1"));
    let mobile = json!({"geo": {"network_class": "mobile"}});
    assert!(run(&sessions(&six, "203.0.113.60", mobile)).is_empty());
}

/// `rounds` presence rounds for `devices` behind one IP; `gaps` gives each answer's offset.
fn rounds(devices: &[(&str, &str)], ip: &str, n: usize, offset: impl Fn(usize, usize) -> f64) -> Vec<Value> {
    let mut events = Vec::new();
    for r in 0..n {
        let issued = r as f64 * 3600.0;
        let mut round: Vec<Value> = devices
            .iter()
            .enumerate()
            .map(|(i, (t, d))| answer(issued + offset(r, i), issued, t, d, ip, json!({})))
            .collect();
        round.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        events.extend(round);
    }
    events
}

#[test]
fn one_person_answering_serially_is_a_presence_burst() {
    let farm: Vec<(&str, &str)> = vec![("a", "f1"), ("b", "f2"), ("c", "f3"), ("d", "f4")];
    let flags = run(&rounds(&farm, "198.51.100.20", 6, |_, i| 20.0 + 8.0 * i as f64));
    assert_eq!(count(&flags, "presence_burst"), 4, "{flags:?}");
    let f = flags.iter().find(|f| f.kind.as_str() == "presence_burst").expect("flag");
    assert!(f.evidence["serialized_rounds"].as_u64().is_some_and(|n| n >= 5));
    assert_eq!(f.evidence["cluster"].as_array().map(Vec::len), Some(4));
}

#[test]
fn coworkers_answering_at_once_are_not_a_presence_burst() {
    let cowork: Vec<(&str, &str)> = vec![("a", "c1"), ("b", "c2"), ("c", "c3"), ("d", "c4")];
    // Independent people: answers overlap (two within a second) or straggle.
    let flags =
        run(&rounds(&cowork, "198.51.100.21", 6, |r, i| [[5.0, 5.5, 40.0, 95.0], [12.0, 30.0, 30.4, 200.0]][r % 2][i]));
    assert_eq!(count(&flags, "presence_burst"), 0);
}

fn posture(p: Value) -> Value {
    json!({"posture": p})
}

#[test]
fn kvm_hardware_is_high_remote_desktop_is_review_and_clean_is_quiet() {
    let ip = "198.51.100.30";
    let flags = run(&[
        answer(
            0.0,
            -5.0,
            "a",
            "kvm",
            ip,
            posture(
                json!({"usb": [{"vid": "1d6b", "pid": "0104", "manufacturer": "PiKVM", "product": "Composite KVM Device"}]}),
            ),
        ),
        answer(1.0, -5.0, "a", "nano", ip, posture(json!({"usb": [{"vid": 0x3346, "pid": 0x1009}]}))),
        answer(2.0, -5.0, "a", "rd", ip, posture(json!({"processes": ["C:\\Program Files\\AnyDesk\\AnyDesk.exe"]}))),
        answer(
            3.0,
            -5.0,
            "a",
            "clean",
            ip,
            posture(
                json!({"usb": [{"vid": "046d", "pid": "c52b", "product": "Unifying Receiver"}], "processes": ["chrome.exe"]}),
            ),
        ),
    ]);
    let severity =
        |d: &str| flags.iter().find(|f| f.kind.as_str() == "remote_control" && f.device == d).map(|f| f.severity);
    assert_eq!(severity("kvm"), Some(Severity::High));
    assert_eq!(severity("nano"), Some(Severity::High));
    assert_eq!(severity("rd"), Some(Severity::Review));
    assert_eq!(severity("clean"), None);
}

#[test]
fn operators_extend_the_remote_control_list() {
    let config = RiskConfig::parse(
        "[[remote_control.processes]]\nname = \"HomeRAT\"\nnames = [\"homerat\"]\nseverity = \"high\"\n",
    )
    .expect("config");
    let (flags, _) =
        run_with(config, &[answer(0.0, -5.0, "a", "d1", "198.51.100.31", posture(json!({"processes": ["homerat"]})))]);
    assert!(flags.iter().any(|f| f.kind.as_str() == "remote_control" && f.severity == Severity::High));
}

fn missed(secs: f64, device: &str) -> Value {
    with(
        base("presence", secs, "acme", device, "198.51.100.40"),
        json!({"outcome": "missed", "issued_at": at(secs - 300.0), "answered_at": null}),
    )
}

#[test]
fn missed_presence_in_working_hours_forms_a_pattern_at_night_it_does_not() {
    // Home in New York (UTC-5): 10:00 UTC + 5 h = 10:00 local on the Monday; -10 h = night.
    let day: Vec<Value> = (0..3).map(|i| missed(5.0 * 3600.0 + i as f64 * 3600.0, "day")).collect();
    let night: Vec<Value> = (0..3).map(|i| missed(-10.0 * 3600.0 + i as f64 * 600.0, "night")).collect();
    let flags = run(&[
        vec![
            enroll(-11.0 * 3600.0, "acme", "day", "198.51.100.40", NYC),
            enroll(-11.0 * 3600.0, "acme", "night", "198.51.100.41", NYC),
        ],
        night,
        day,
    ]
    .concat());
    assert!(has(&flags, "presence_missed_pattern", "day"), "{flags:?}");
    assert!(!has(&flags, "presence_missed_pattern", "night"));
}

fn tpm(reset: u32, restart: u32, clock: u64, place: (f64, f64), country: &str) -> Value {
    json!({"tpm": {"clock": clock, "reset_count": reset, "restart_count": restart}, "geo": geo(place, country)})
}

#[test]
fn tpm_counters_backwards_or_reset_with_a_move_are_anomalies() {
    let ip = "198.51.100.50";
    let flags = run(&[
        answer(0.0, -5.0, "a", "back", ip, tpm(7, 2, 1000, NYC, "US")),
        answer(3600.0, 3595.0, "a", "back", ip, tpm(6, 0, 10, NYC, "US")),
        answer(0.0, -5.0, "a", "moved", ip, tpm(7, 0, 1000, NYC, "US")),
        answer(86_400.0, 86_395.0, "a", "moved", "203.0.113.70", tpm(8, 0, 10, LONDON, "GB")),
        answer(0.0, -5.0, "a", "reboot", ip, tpm(7, 0, 1000, NYC, "US")),
        answer(86_400.0, 86_395.0, "a", "reboot", ip, tpm(8, 0, 10, BROOKLYN, "US")),
    ]);
    let severity =
        |d: &str| flags.iter().find(|f| f.kind.as_str() == "tpm_anomaly" && f.device == d).map(|f| f.severity);
    assert_eq!(severity("back"), Some(Severity::High));
    assert_eq!(severity("moved"), Some(Severity::Review));
    assert_eq!(severity("reboot"), None);
}

#[test]
fn unknown_configuration_keys_are_rejected_by_name() {
    let toml = RiskConfig::parse("[shared_egress]\nwindow_hourz = 3\n").expect_err("unknown key");
    assert!(toml.contains("window_hourz"), "{toml}");
    let json = RiskConfig::parse(r#"{"relocated": {"radius_km": 10, "colour": 1}}"#).expect_err("unknown key");
    assert!(json.contains("colour"), "{json}");
    assert!(RiskConfig::parse("[impossible_travel]\nmax_kmh = 900.0\n").is_ok());
}

#[test]
fn farm_summary_combines_signals() {
    let farm: Vec<(&str, &str)> = vec![("a", "f1"), ("b", "f2"), ("c", "f3"), ("d", "f4")];
    let (_, engine) = run_with(RiskConfig::default(), &rounds(&farm, "198.51.100.20", 6, |_, i| 20.0 + 8.0 * i as f64));
    let s = engine.summary("a", "f1").expect("summary");
    assert!(s.farm_suspected);
    assert!(s.risk >= 80);
    assert_eq!(engine.summaries().count(), 4);
}

#[test]
fn state_stays_bounded_over_many_addresses() {
    let mut engine = Engine::new(RiskConfig::default()).expect("config");
    for i in 0..20_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0A00_0000 + i).to_string();
        let event = base("session", f64::from(i) * 60.0, "a", &format!("d{}", i % 50), &ip);
        engine.process(&Event::from_json(&event.to_string()).expect("event"));
    }
    assert_eq!(engine.device_count(), 50);
    // 20,000 addresses over ~14 days; only about a day's worth are held.
    assert!(engine.egress_count() < 2_000, "{}", engine.egress_count());
}
