//! Declared-home collisions and answer sweeps on one tenant's LAN (issue #15 items 3 and 1),
//! with their look-alikes and what one tenant must not be able to do to another.

use super::*;
use tether_risk::FlagPolicy;
use tether_risk::event::Home;

/// A place in Manhattan, and points `metres` north of it.
const LAT: f64 = 40.712_8;
const LON: f64 = -74.006;

fn north(metres: f64) -> (f64, f64) {
    (LAT + metres / 111_195.0, LON)
}

/// `(tenant, worker, (lat, lon))` declared as an admin would, before the events.
type Declared<'a> = (&'a str, &'a str, (f64, f64));

fn run_declared(homes: &[Declared], mut events: Vec<Timed>) -> (Vec<Flag>, Engine) {
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    for (tenant, worker, (lat, lon)) in homes {
        engine.declare(tenant, worker, Some(&Home { lat: *lat, lon: *lon, country: Some("US".into()) }), None);
    }
    let mut flags = Vec::new();
    for (_, e) in &events {
        flags.extend(engine.process(&Event::from_json(&e.to_string()).expect("a valid test event")));
    }
    flags.extend(engine.finish());
    (flags, engine)
}

/// Device `d{d}` of worker `w-d{d}` answering hourly for a working day from `ip`.
fn day_of_answers(tenant: &str, d: usize, ip: &str) -> Vec<Timed> {
    days_of_answers(tenant, d, ip, 1)
}

/// The same on `days` days in a row: seven park a laptop there (`[persistence] min_days`).
fn days_of_answers(tenant: &str, d: usize, ip: &str, days: usize) -> Vec<Timed> {
    (0..days)
        .flat_map(|day| (0..8).map(move |h| (day, h)))
        .map(|(day, h)| {
            let issued = day as f64 * DAY + h as f64 * HOUR + jitter(d as u64) * HOUR;
            let when = issued + 10.0 + 200.0 * jitter((d * 977 + day * 31 + h) as u64);
            answer(when, issued, tenant, &format!("d{d}"), ip, "residential", None)
        })
        .collect()
}

fn kinds_at_least(flags: &[Flag], device: &str, severity: Severity) -> Vec<String> {
    flags.iter().filter(|f| f.device == device && f.severity >= severity).map(|f| f.kind.as_str().into()).collect()
}

#[test]
fn workers_of_several_employers_declaring_one_home_are_not_reported_on_declarations_alone() {
    // Four employers' workers declared within 40 m of each other (one address, geocoded
    // slightly apart), each laptop answering from its own line; a fifth 400 m away.
    let mut homes: Vec<(String, String, (f64, f64))> =
        (0..4).map(|d| (format!("t{d}"), format!("w-d{d}"), north(d as f64 * 13.0))).collect();
    homes.push(("t4".into(), "w-d4".into(), north(400.0)));
    let declared: Vec<Declared> = homes.iter().map(|(t, w, p)| (t.as_str(), w.as_str(), *p)).collect();
    // Two of them state it in the log's enrollment instead of a declaration.
    let mut events: Vec<Timed> =
        (0..5).flat_map(|d| day_of_answers(&format!("t{d}"), d, &format!("198.51.100.{}", 10 + d))).collect();
    for d in [0usize, 1] {
        let (lat, lon) = north(d as f64 * 13.0);
        events.push(enroll(
            0.0,
            &format!("t{d}"),
            &format!("d{d}"),
            &format!("198.51.100.{}", 10 + d),
            json!({"home": {"lat": lat, "lon": lon, "country": "US"}}),
        ));
    }
    let (flags, engine) = run_declared(&declared[2..], events);
    // Declarations alone are never reported: a finding on them would tell any tenant, for any
    // address it declares, whether other employers' workers live there.
    for d in 0..5 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        assert!(flagged(&flags, "home_collision", &dev).is_none(), "{flags:?}");
        assert!(!farm(&engine, &t, &dev));
    }
}

#[test]
fn roommates_a_family_and_a_coliving_flat_of_three_are_quiet() {
    // Each household at one address, one line, online together all day: a flat share of two
    // employers, a family of three of two employers, a co-living flat of three employers.
    for (n, tenants) in [(2usize, 2usize), (3, 2), (3, 3)] {
        let homes: Vec<(String, String)> = (0..n).map(|d| (format!("t{}", d % tenants), format!("w-d{d}"))).collect();
        let declared: Vec<Declared> = homes.iter().map(|(t, w)| (t.as_str(), w.as_str(), north(5.0))).collect();
        let events = (0..n).flat_map(|d| day_of_answers(&format!("t{}", d % tenants), d, "198.51.100.30")).collect();
        let (flags, engine) = run_declared(&declared, events);
        assert!(flags.iter().all(|f| f.kind.as_str() != "home_collision"), "{n} of {tenants}: {flags:?}");
        for d in 0..n {
            assert!(!farm(&engine, &format!("t{}", d % tenants), &format!("d{d}")));
        }
    }
}

#[test]
fn homes_located_from_enrollment_addresses_never_collide() {
    // Five employers' laptops enrolling from five lines that the IP database places at one
    // city centroid: a guess kilometres wide, not a place within 100 m.
    let events = (0..5)
        .map(|d| enroll(0.0, &format!("t{d}"), &format!("d{d}"), &format!("198.51.100.{}", 40 + d), json!({})))
        .collect();
    let (flags, _) = run(events);
    assert!(flags.iter().all(|f| f.kind.as_str() != "home_collision"), "{flags:?}");
}

#[test]
fn laptops_of_several_employers_declaring_one_home_seen_together_are_a_farm() {
    // Four employers' laptops behind one line for a day, answering independently: a review
    // cluster, not yet a persistent one. Their workers all declaring that one house is the farm.
    let events =
        |days| (0..4).flat_map(|d| days_of_answers(&format!("t{d}"), d, "198.51.100.50", days)).collect::<Vec<_>>();
    let (_, engine) = run_declared(&[], events(1));
    assert!(!farm(&engine, "t0", "d0"), "one day together is not enough without the declarations");

    let homes: Vec<(String, String)> = (0..4).map(|d| (format!("t{d}"), format!("w-d{d}"))).collect();
    let declared: Vec<Declared> = homes.iter().map(|(t, w)| (t.as_str(), w.as_str(), north(20.0))).collect();
    // On the first day a co-living house looks the same: review, not yet farm evidence.
    let (flags, engine) = run_declared(&declared, events(1));
    for d in 0..4 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        let f = flagged(&flags, "home_collision", &dev).expect("reported");
        assert_eq!((f.severity, &f.evidence["parked"]), (Severity::Review, &json!(false)), "{}", f.evidence);
        assert!(!farm(&engine, &t, &dev));
    }
    // Parked there for a week and a half, never off the line: the farm.
    let (flags, engine) = run_declared(&declared, events(7));
    for d in 0..4 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        let f = flagged(&flags, "home_collision", &dev).expect("flagged");
        assert_eq!(f.severity, Severity::High, "{}", f.evidence);
        assert_eq!(f.evidence["parked"], true, "{}", f.evidence);
        assert!(f.evidence["pattern"].as_str().is_some_and(|p| p.contains("seen together")), "{}", f.evidence);
        assert_eq!(f.evidence["seen_together"]["workers"], 4);
        assert_eq!(f.evidence["seen_together"]["employers"], 4);
        assert_eq!(f.evidence["seen_together"]["egress"], "198.51.100.50");
        let summary = engine.summary(&t, &dev).expect("summary");
        assert!(summary.farm_suspected && summary.farm_signals.iter().any(|s| s.starts_with("home_collision")));
    }
}

#[test]
fn one_tenants_declarations_cannot_get_another_tenants_worker_denied() {
    // The victim's worker lives at the declared place behind their own line, with their own LAN.
    // The attacker declares six workers there, has its gateway report the victim's address for
    // its laptops, and has its laptops claim the victim's LAN, answering in step with the victim.
    let victim_ip = "198.51.100.60";
    let mut declared: Vec<Declared> = vec![("victim", "w-d0", north(0.0))];
    let names: Vec<String> = (1..7).map(|d| format!("w-d{d}")).collect();
    declared.extend(names.iter().map(|w| ("attacker", w.as_str(), north(10.0))));
    let mut events = day_of_answers("victim", 0, victim_ip);
    for (_, e) in events.iter_mut() {
        e["posture"] = json!({"lan": {"gateway_mac_hash": "victims-router"}});
    }
    for d in 1..7 {
        for (secs, mut e) in day_of_answers("attacker", d, "203.0.113.9") {
            e["posture"] = json!({"lan": {"gateway_mac_hash": "victims-router"}});
            events.push((secs, e));
            let session = json!({"type": "session", "at": at(secs + 1.0), "tenant": "attacker",
                "worker": format!("w-d{d}"), "device": format!("d{d}"), "ip": victim_ip, "gateway": "vpn",
                "geo": geo("residential")});
            events.push((secs + 1.0, session));
        }
    }
    let (flags, engine) = run_declared(&declared, events);
    // Nothing is reported to the victim: the attacker's declarations are its own claims, and its
    // laptops were never seen at the victim's address by tetherd.
    assert!(flagged(&flags, "home_collision", "d0").is_none(), "{flags:?}");
    // Nothing the victim's policy could deny on, even one that denies at review.
    assert!(kinds_at_least(&flags, "d0", Severity::Review).is_empty(), "{flags:?}");
    let strict = FlagPolicy::new(Severity::Review, []).expect("policy");
    assert!(flags.iter().filter(|f| f.device == "d0").all(|f| !strict.denies(f.kind.as_str(), f.severity)));
    assert!(!farm(&engine, "victim", "d0"));
    // The attacker's own laptops, placed together by its own claims, frame only itself (review:
    // its gateway also placed them at the victim's address, so they are not parked anywhere).
    assert_eq!(flagged(&flags, "home_collision", "d1").map(|f| f.severity), Some(Severity::Review));
}

/// The walked room's answers with each laptop behind its own line, all reporting `lan`;
/// `tenant(d)` is whose laptop `d` is.
fn walked_lan(lan: &str, tenant: impl Fn(usize) -> &'static str) -> Vec<Timed> {
    let mut events = walked_room("198.51.100.70", Some(lan), 2);
    for (_, e) in events.iter_mut() {
        let d: usize = e["device"].as_str().and_then(|s| s[1..].parse().ok()).unwrap_or(0);
        e["tenant"] = tenant(d).into();
        e["ip"] = format!("203.0.113.{}", 20 + d).into();
    }
    events
}

#[test]
fn one_employers_laptops_swept_on_one_lan_behind_different_exits_are_a_burst() {
    let (flags, engine) = run(walked_lan("farm-room", |_| "acme"));
    for d in 0..4 {
        let f = flagged(&flags, "presence_burst", &format!("d{d}")).expect("each laptop is flagged");
        assert_eq!(f.severity, Severity::High);
        assert!(f.evidence["pattern"].as_str().is_some_and(|p| p.contains("same LAN")), "{}", f.evidence);
        assert_eq!(f.evidence["egress"], "lan:farm-room");
        assert!(farm(&engine, "acme", &format!("d{d}")));
    }
    // Without the LAN reports nothing ties the four lines together.
    let mut events = walked_lan("farm-room", |_| "acme");
    for (_, e) in events.iter_mut() {
        e["posture"] = Value::Null;
    }
    let (flags, _) = run(events);
    assert!(flags.iter().all(|f| f.kind.as_str() != "presence_burst"), "{flags:?}");
}

#[test]
fn another_tenants_laptops_claiming_a_lan_do_not_chain_with_its_owner() {
    // One victim laptop on its LAN; three attacker laptops claim it and answer in step.
    let (flags, engine) = run(walked_lan("victims-lan", |d| if d == 0 { "victim" } else { "attacker" }));
    assert!(flagged(&flags, "presence_burst", "d0").is_none(), "{flags:?}");
    assert!(!farm(&engine, "victim", "d0"));
    // The attacker's own laptops answered in turn (d2 and d3 share each walk) chain with each
    // other: it frames only itself.
    assert!(flagged(&flags, "presence_burst", "d2").is_some() && flagged(&flags, "presence_burst", "d3").is_some());
}

#[test]
fn two_flats_of_one_building_behind_their_isps_shared_address_are_not_seen_together() {
    // Two flats 30 m apart, two workers of two employers each, behind an ISP address that six
    // other households share too; nobody reports a LAN, so the carrier NAT goes unrecognised.
    let homes: Vec<(String, String, (f64, f64))> =
        (0..4).map(|d| (format!("t{}", d % 2), format!("w-d{d}"), north(if d < 2 { 0.0 } else { 30.0 }))).collect();
    let declared: Vec<Declared> = homes.iter().map(|(t, w, p)| (t.as_str(), w.as_str(), *p)).collect();
    let tenant = |d: usize| if d < 4 { format!("t{}", d % 2) } else { format!("t{d}") };
    let events = (0..10).flat_map(|d| day_of_answers(&tenant(d), d, "198.51.100.80")).collect();
    let (flags, engine) = run_declared(&declared, events);
    for d in 0..4 {
        let found = flagged(&flags, "home_collision", &format!("d{d}"));
        assert!(found.is_none(), "most workers behind that address live elsewhere: {found:?}");
        assert!(!farm(&engine, &tenant(d), &format!("d{d}")));
    }
    // The four alone behind that address are their home's line: seen together.
    let events = (0..4).flat_map(|d| days_of_answers(&tenant(d), d, "198.51.100.81", 7)).collect();
    let (flags, _) = run_declared(&declared, events);
    assert_eq!(flagged(&flags, "home_collision", "d0").map(|f| f.severity), Some(Severity::High));
}

#[test]
fn an_office_address_typed_as_home_is_seen_together_until_the_office_egress_is_registered() {
    // Three employers' HR typed their shared office's address as home (one worker of t0, two each
    // of t1 and t2); the five work there, behind the office's address.
    let tenant = |d: usize| format!("t{}", d.div_ceil(2));
    let homes: Vec<(String, String)> = (0..5).map(|d| (tenant(d), format!("w-d{d}"))).collect();
    let declared: Vec<Declared> = homes.iter().map(|(t, w)| (t.as_str(), w.as_str(), north(0.0))).collect();
    let events = || (0..5).flat_map(|d| days_of_answers(&tenant(d), d, "198.51.100.90", 7)).collect::<Vec<_>>();
    let (flags, _) = run_declared(&declared, events());
    assert_eq!(flagged(&flags, "home_collision", "d0").map(|f| f.severity), Some(Severity::High));

    // Once t0 registers the office, its laptop there is seen with nobody: nothing for t0, while
    // the others, who registered nothing, still see each other.
    let mut events = events();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    engine.register_offices("t0", &["198.51.100.90/32".parse().expect("cidr")]);
    for (tenant, worker, (lat, lon)) in &declared {
        engine.declare(tenant, worker, Some(&Home { lat: *lat, lon: *lon, country: None }), None);
    }
    let mut flags = Vec::new();
    for (_, e) in &events {
        flags.extend(engine.process(&Event::from_json(&e.to_string()).expect("a valid test event")));
    }
    assert!(flagged(&flags, "home_collision", "d0").is_none(), "{flags:?}");
    assert_eq!(flagged(&flags, "home_collision", "d1").map(|f| f.severity), Some(Severity::High));
}

#[test]
fn a_shared_house_whose_residents_tether_now_and_then_is_no_farm() {
    // Five remote workers of five employers live in one house, declare it, and work there every
    // day for two weeks; each now and then through their phone's hotspot (a day in four, each
    // on other days). The same laptops never off the house's line are a quiet farm.
    let declared: Vec<(String, String)> = (0..5).map(|d| (format!("t{d}"), format!("w-d{d}"))).collect();
    let declared: Vec<Declared> = declared.iter().map(|(t, w)| (t.as_str(), w.as_str(), north(5.0))).collect();
    let house = |tethering: bool| {
        let mut events: Vec<Timed> =
            (0..5).flat_map(|d| days_of_answers(&format!("t{d}"), d, "198.51.100.70", 10)).collect();
        for (secs, e) in events.iter_mut() {
            let d: usize = e["device"].as_str().and_then(|s| s[1..].parse().ok()).unwrap_or(0);
            let (day, hour) = ((*secs / DAY) as usize, ((*secs % DAY) / HOUR) as usize);
            if tethering && (day + d).is_multiple_of(4) && hour == 5 {
                e["ip"] = format!("100.64.0.{}", 10 + d).into();
                e["geo"] = geo("mobile");
            }
        }
        events
    };
    let (flags, engine) = run_declared(&declared, house(true));
    for d in 0..5 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        assert!(!farm(&engine, &t, &dev), "{dev}: {flags:?}");
        assert!(kinds_at_least(&flags, &dev, Severity::High).is_empty(), "{dev}: {flags:?}");
        let f = flagged(&flags, "home_collision", &dev).expect("still reported for review");
        assert_eq!(f.evidence["parked"], false, "{}", f.evidence);
    }
    let (flags, engine) = run_declared(&declared, house(false));
    for d in 0..5 {
        let (t, dev) = (format!("t{d}"), format!("d{d}"));
        assert!(farm(&engine, &t, &dev), "{dev}");
        assert_eq!(flagged(&flags, "home_collision", &dev).map(|f| f.severity), Some(Severity::High));
    }
}
