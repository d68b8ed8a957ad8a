//! The quiet-farm signals (issue #15), each on its pattern and its look-alike:
//! answer sweeps without probes, persistent cross-employer clusters, carrier
//! NAT, venues, shared hardware and KVM gadgets by USB structure.

use serde_json::{Value, json};
use tether_risk::event::format_time;
use tether_risk::simulate::SIM_START;
use tether_risk::{Engine, Event, Flag, RiskConfig, Severity};

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;

/// RFC 3339 time `secs` seconds after the first Monday of the simulation (09:00 UTC).
fn at(secs: f64) -> String {
    format_time(SIM_START + 9 * 3_600_000 + (secs * 1000.0) as i64)
}

fn geo(class: &str) -> Value {
    json!({"lat": 40.7, "lon": -74.0, "accuracy_km": 10, "country": "US", "network_class": class})
}

/// `(seconds, event)`: the tests build events out of order and sort them by time.
type Timed = (f64, Value);

fn enroll(secs: f64, tenant: &str, device: &str, ip: &str, extra: Value) -> Timed {
    let mut v = json!({"type": "enrollment", "at": at(secs), "tenant": tenant, "worker": format!("w-{device}"),
        "device": device, "ip": ip, "attested": true, "format": "packed", "geo": geo("residential")});
    if let (Some(map), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    (secs, v)
}

fn answer(secs: f64, issued: f64, tenant: &str, device: &str, ip: &str, class: &str, lan: Option<&str>) -> Timed {
    let posture = lan.map(|l| json!({"lan": {"gateway_mac_hash": l}}));
    (
        secs,
        json!({"type": "presence", "at": at(secs), "tenant": tenant, "worker": format!("w-{device}"), "device": device,
        "ip": ip, "outcome": "ok", "issued_at": at(issued), "answered_at": at(secs), "geo": geo(class),
        "posture": posture}),
    )
}

fn run(mut events: Vec<Timed>) -> (Vec<Flag>, Engine) {
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    let mut flags = Vec::new();
    for (_, e) in &events {
        let event = Event::from_json(&e.to_string()).expect("a valid test event");
        flags.extend(engine.process(&event));
    }
    flags.extend(engine.finish());
    (flags, engine)
}

fn flagged(flags: &[Flag], kind: &str, device: &str) -> Option<Flag> {
    flags.iter().filter(|f| f.kind.as_str() == kind && f.device == device).max_by_key(|f| f.severity).cloned()
}

fn farm(engine: &Engine, tenant: &str, device: &str) -> bool {
    engine.summary(tenant, device).is_some_and(|s| s.farm_suspected)
}

/// A small deterministic generator for "independent" answer times.
fn jitter(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Four laptops of four employers, each challenged hourly at its own minute; one
/// person walks in every half hour and answers what is pending, 6 s apart.
fn walked_room(ip: &str, lan: Option<&str>, days: usize) -> Vec<Timed> {
    let phases = [0.0, 10.0 * 60.0, 30.0 * 60.0, 40.0 * 60.0];
    let mut out = Vec::new();
    for day in 0..days {
        let start = day as f64 * DAY;
        let mut pending: Vec<(usize, f64)> = Vec::new();
        let mut next_issue: Vec<f64> = phases.iter().map(|p| start + p).collect();
        let mut walk = start + 25.0 * 60.0;
        while walk < start + 8.0 * HOUR {
            for (d, t) in next_issue.iter_mut().enumerate() {
                while *t <= walk {
                    pending.push((d, *t));
                    *t += HOUR;
                }
            }
            let mut when = walk + 10.0;
            for (d, issued) in pending.drain(..) {
                out.push(answer(when, issued, &format!("t{d}"), &format!("d{d}"), ip, "residential", lan));
                when += 6.0;
            }
            walk += 30.0 * 60.0;
        }
    }
    out
}

#[test]
fn a_walked_room_sweep_without_probes_is_a_presence_burst() {
    let (flags, engine) = run(walked_room("198.51.100.7", None, 2));
    for d in 0..4 {
        let f = flagged(&flags, "presence_burst", &format!("d{d}")).expect("every laptop of the room is flagged");
        assert_eq!(f.severity, Severity::High);
        assert!(f.evidence["pattern"].as_str().is_some_and(|p| p.starts_with("answer sweeps")), "{}", f.evidence);
        assert_eq!(f.evidence["egress"], "198.51.100.7");
        assert!(f.evidence["answers_in_sweeps"].as_u64().is_some_and(|n| n >= 5));
        assert_eq!(f.evidence["thresholds"]["max_gap_secs"], 20.0);
        assert!(!f.evidence["recent_sweeps"].as_array().is_some_and(Vec::is_empty));
        assert!(farm(&engine, &format!("t{d}"), &format!("d{d}")));
    }
    let summary = engine.summary("t0", "d0").expect("summary");
    assert!(summary.farm_signals.iter().any(|s| s.starts_with("presence_burst")), "{:?}", summary.farm_signals);
}

#[test]
fn strangers_answering_at_their_own_times_behind_one_address_are_no_sweep() {
    // A coworking space: 24 people of 24 employers, each answering an hourly challenge
    // after their own delay, for two days. Some answers fall seconds apart by chance.
    let mut events = Vec::new();
    for day in 0..2u64 {
        for d in 0..24u64 {
            for h in 0..8u64 {
                let issued = day as f64 * DAY + h as f64 * HOUR + jitter(d) * HOUR;
                let delay = 5.0 + 120.0 * jitter(d * 1000 + day * 100 + h);
                let (t, dev) = (format!("t{d}"), format!("d{d}"));
                events.push(answer(issued + delay, issued, &t, &dev, "198.51.100.8", "business", None));
            }
        }
    }
    let (flags, _) = run(events);
    assert!(flags.iter().all(|f| f.kind.as_str() != "presence_burst"), "{flags:?}");
}

#[test]
fn chained_answers_from_different_lans_behind_a_carrier_nat_are_no_sweep() {
    // The walked room's timing, but each laptop reports its own LAN: households behind an
    // ISP's carrier-grade NAT whose answers happened to line up are not one hand.
    let mut events = walked_room("198.51.100.9", None, 2);
    for (_, e) in events.iter_mut() {
        let device = e["device"].as_str().unwrap_or_default().to_string();
        e["posture"] = json!({"lan": {"gateway_mac_hash": format!("lan-of-{device}")}});
    }
    let (flags, _) = run(events);
    assert!(flags.iter().all(|f| f.kind.as_str() != "presence_burst"), "{flags:?}");
    // The same room reporting one LAN is a sweep.
    let (flags, _) = run(walked_room("198.51.100.9", Some("one-room"), 2));
    assert!(flagged(&flags, "presence_burst", "d0").is_some());
}

/// `n` laptops of `n` employers behind one address every working hour for `days` days;
/// `home(d, day)` says where device `d` is instead (None: at the shared address).
fn cluster(ip: &str, class: &str, n: usize, days: usize, lan: impl Fn(usize) -> Option<String>) -> Vec<Timed> {
    let mut out = Vec::new();
    for day in 0..days {
        for d in 0..n {
            for h in 0..8 {
                let issued = day as f64 * DAY + h as f64 * HOUR + jitter(d as u64) * HOUR;
                let when = issued + 10.0 + 200.0 * jitter((d * 977 + day * 31 + h) as u64);
                let (t, dev) = (format!("t{d}"), format!("d{d}"));
                out.push(answer(when, issued, &t, &dev, ip, class, lan(d).as_deref()));
            }
        }
    }
    out
}

#[test]
fn a_cross_employer_cluster_living_at_one_address_for_days_is_a_farm() {
    // Five laptops of five employers, no tools, answering like five people would: only
    // their staying there, day after day, and nowhere else, gives them away.
    let (flags, engine) = run(cluster("198.51.100.20", "residential", 5, 8, |_| None));
    for d in 0..5 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        assert!(farm(&engine, &t, &dev), "{dev} not suspected");
        let f = flagged(&flags, "shared_egress", &dev).expect("flag");
        assert_eq!(f.severity, Severity::High);
        assert!(f.evidence["pattern"].as_str().is_some_and(|p| p.starts_with("persistent")), "{}", f.evidence);
        assert_eq!(f.evidence["resident_workers"], 5);
        // Readers of stored flags (the console's farm view) rebuild the judgement from this.
        assert_eq!(f.evidence["farm_marks"], serde_json::json!(["persistent"]), "{}", f.evidence);
        assert_eq!(f.evidence["thresholds"]["persistence"]["min_days"], 7);
    }
    assert!(flags.iter().all(|f| f.kind.as_str() != "presence_burst"), "independent answers are no sweep");
    // Six days are not enough.
    let (_, engine) = run(cluster("198.51.100.20", "residential", 5, 6, |_| None));
    assert!(!farm(&engine, "t0", "d0"));
}

#[test]
fn coworking_members_who_also_work_from_home_are_no_farm() {
    // Six members of six employers at the space every other day, at home on the others.
    let mut events = Vec::new();
    for e in cluster("198.51.100.21", "residential", 6, 10, |_| None) {
        let day = (e.0 / DAY) as usize;
        let d: usize = e.1["device"].as_str().and_then(|s| s[1..].parse().ok()).unwrap_or(0);
        if (day + d).is_multiple_of(2) {
            events.push(e);
        } else {
            let (t, dev) = (format!("t{d}"), format!("d{d}"));
            let issued = e.1["issued_at"].clone();
            let mut home = answer(e.0, 0.0, &t, &dev, &format!("203.0.113.{}", 10 + d), "residential", None);
            home.1["issued_at"] = issued;
            events.push(home);
        }
    }
    let (flags, engine) = run(events);
    for d in 0..6 {
        assert!(!farm(&engine, &format!("t{d}"), &format!("d{d}")), "d{d}");
    }
    assert!(flags.iter().all(|f| f.severity < Severity::High), "{flags:?}");
}

#[test]
fn households_behind_a_carrier_nat_are_not_denied() {
    // Eight households of eight employers behind one ISP address for a week, each reporting
    // its own router: many LANs behind one public address is a carrier NAT, not a room.
    let (flags, engine) =
        run(cluster("198.51.100.30", "residential", 8, 7, |d| (d % 2 == 0).then(|| format!("router-{d}"))));
    for d in 0..8 {
        assert!(!farm(&engine, &format!("t{d}"), &format!("d{d}")), "d{d}");
    }
    assert!(flags.iter().all(|f| f.severity < Severity::High), "{flags:?}");
    let f = flagged(&flags, "shared_egress", "d0").expect("still reported");
    assert_eq!(f.evidence["carrier_nat"], true, "{}", f.evidence);
    // The same laptops reporting one LAN are one room: denied, and a farm after a working week.
    let (flags, engine) = run(cluster("198.51.100.31", "residential", 8, 7, |_| Some("room".into())));
    assert_eq!(flagged(&flags, "shared_egress", "d0").map(|f| f.severity), Some(Severity::High));
    assert!(farm(&engine, "t0", "d0"));
}

#[test]
fn a_conference_of_many_employers_for_a_day_is_review_not_high() {
    let (flags, engine) = run(cluster("198.51.100.40", "business", 10, 1, |_| Some("venue-wifi".into())));
    let f = flagged(&flags, "shared_egress", "d0").expect("reported");
    assert_eq!(f.severity, Severity::Review, "{}", f.evidence);
    assert!(!farm(&engine, "t0", "d0"));
}

#[test]
fn one_tpm_enrolled_by_two_workers_of_one_employer_names_both() {
    let ek = json!({"hardware": "ek:aa11"});
    let (flags, engine) = run(vec![
        enroll(0.0, "acme", "d1", "198.51.100.50", ek.clone()),
        enroll(60.0, "acme", "d2", "198.51.100.51", ek.clone()),
        // One worker re-enrolling their own laptop is not shared.
        enroll(120.0, "acme", "d3", "198.51.100.52", json!({"hardware": "ek:bb22"})),
        (180.0, {
            let mut e = enroll(180.0, "acme", "d4", "198.51.100.52", json!({"hardware": "ek:bb22"})).1;
            e["worker"] = "w-d3".into();
            e
        }),
    ]);
    for (me, other) in [("d1", "d2"), ("d2", "d1")] {
        let f = flagged(&flags, "shared_hardware", me).expect("both flagged");
        assert_eq!(f.severity, Severity::High);
        assert!(f.evidence.to_string().contains(other), "names the other: {}", f.evidence);
        assert!(farm(&engine, "acme", me));
    }
    assert!(flagged(&flags, "shared_hardware", "d3").is_none() && flagged(&flags, "shared_hardware", "d4").is_none());
}

#[test]
fn one_tpm_across_employers_is_flagged_for_both_without_naming_the_other() {
    let ek = json!({"hardware": "ek:cc33"});
    let (flags, _) = run(vec![
        enroll(0.0, "acme", "acme-laptop", "198.51.100.60", ek.clone()),
        enroll(60.0, "globex", "globex-laptop", "198.51.100.61", ek.clone()),
    ]);
    for (me, other) in [("acme-laptop", "globex"), ("globex-laptop", "acme")] {
        let f = flagged(&flags, "shared_hardware", me).expect("both flagged");
        assert_eq!(f.evidence["other_tenants"], 1);
        let text = f.evidence.to_string();
        assert!(!text.contains(other), "the other tenant stays anonymous: {text}");
    }
}

#[test]
fn an_unattested_claim_of_another_tenants_hardware_flags_only_the_claimant() {
    // globex names acme's EK hash in an unattested enrollment: it proves nothing about acme.
    let (flags, _) = run(vec![
        enroll(0.0, "acme", "victim", "198.51.100.70", json!({"hardware": "ek:dd44"})),
        enroll(60.0, "globex", "claimant", "198.51.100.71", json!({"hardware": "ek:dd44", "attested": false})),
    ]);
    assert!(flagged(&flags, "shared_hardware", "victim").is_none(), "{flags:?}");
    assert!(flagged(&flags, "shared_hardware", "claimant").is_some());
}

fn usb_answer(device: &str, usb: Value) -> Timed {
    let mut e = answer(10.0, 0.0, "acme", device, "198.51.100.80", "residential", None);
    e.1["posture"] = json!({"usb": [usb]});
    e
}

#[test]
fn a_kvm_gadget_with_spoofed_ids_is_caught_by_its_structure() {
    let kbd_mouse = json!([{"class": 3, "subclass": 1, "protocol": 1}, {"class": 3, "subclass": 1, "protocol": 2}]);
    let mut with_storage = kbd_mouse.clone();
    if let Some(list) = with_storage.as_array_mut() {
        list.push(json!({"class": 8, "subclass": 6, "protocol": 80}));
    }
    let mut receiver = kbd_mouse.clone();
    if let Some(list) = receiver.as_array_mut() {
        list.push(json!({"class": 3}));
    }
    let (flags, engine) = run(vec![
        usb_answer(
            "spoofed",
            json!({"vid": "046d", "pid": "c31c", "product": "USB Keyboard", "interfaces": with_storage}),
        ),
        usb_answer(
            "cafebabe",
            json!({"vid": "413c", "pid": "2113", "serial": "CAFEBABE", "interfaces": kbd_mouse.clone()}),
        ),
        usb_answer(
            "receiver",
            json!({"vid": "046d", "pid": "c52b", "product": "USB Receiver", "interfaces": receiver}),
        ),
        usb_answer("comet", json!({"vid": "38eb", "pid": "0002"})),
        usb_answer("ch9329", json!({"vid": "1a86", "pid": "e129"})),
        usb_answer("blikvm", json!({"vid": "1d6b", "pid": "0106", "product": "BliKVM"})),
    ]);
    for device in ["spoofed", "cafebabe", "comet", "ch9329", "blikvm"] {
        let f = flagged(&flags, "remote_control", device).expect(device);
        assert_eq!(f.severity, Severity::High, "{device}: {}", f.evidence);
        assert!(farm(&engine, "acme", device));
    }
    let f = flagged(&flags, "remote_control", "spoofed").expect("flag");
    assert!(f.evidence.to_string().contains("by structure"), "{}", f.evidence);
    assert!(f.evidence.to_string().contains("mass-storage"), "{}", f.evidence);
    assert!(flagged(&flags, "remote_control", "receiver").is_none(), "a wireless receiver is keyboard and mouse too");
}

#[test]
fn remembered_hardware_is_bounded() {
    let mut config = RiskConfig::default();
    config.shared_hardware.max_tracked = 2;
    let mut engine = Engine::new(config).expect("valid configuration");
    let mut flags = Vec::new();
    for (i, hash) in ["ek:1", "ek:2", "ek:3", "ek:1"].iter().enumerate() {
        let (_, e) = enroll(i as f64, "acme", &format!("d{i}"), "198.51.100.90", json!({"hardware": hash}));
        flags.extend(engine.process(&Event::from_json(&e.to_string()).expect("event")));
    }
    // ek:1 was forgotten when ek:3 came: its second holder is not matched (bounded, not unbounded).
    assert!(flags.iter().all(|f| f.kind.as_str() != "shared_hardware"), "{flags:?}");
}

#[test]
fn a_home_off_the_earth_is_refused_in_a_log_and_harmless_when_declared() {
    // Found by fuzzing analyze_events: a longitude of 1e300 overflowed the local-day offset.
    let line = json!({"type": "enrollment", "at": at(0.0), "tenant": "t0", "worker": "w-d0", "device": "d0",
        "ip": "198.51.100.20", "attested": true, "home": {"lat": 0.0, "lon": 1e300}});
    let refused = Event::from_json(&line.to_string()).expect_err("an off-Earth home is refused");
    assert!(refused.contains("`home` is not a place on Earth"), "{refused}");

    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    engine.set_home("t0", "w-d0", &tether_risk::event::Home { lat: 0.0, lon: 1e300, country: None });
    let mut events = cluster("198.51.100.20", "residential", 5, 8, |_| None);
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, e) in &events {
        engine.process(&Event::from_json(&e.to_string()).expect("a valid test event"));
    }
    engine.finish();
    assert!(farm(&engine, "t0", "d0"), "the cluster is still judged");
}

/// Declared-home collisions and LAN sweeps (kept apart to keep each file readable).
#[path = "farm/homes.rs"]
mod homes;
