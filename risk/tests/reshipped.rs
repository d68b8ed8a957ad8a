//! `anonymized_egress` high for reshipped laptops: how soon, and who stays quiet.

use serde_json::{Value, json};
use tether_risk::event::format_time;
use tether_risk::simulate::SIM_START;
use tether_risk::{Engine, Event, Flag, RiskConfig, Severity};

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;
const NYC: (f64, f64) = (40.71, -74.01);
const VENUE_PARIS: (f64, f64) = (48.86, 2.35);
const FLAT_MANILA: (f64, f64) = (14.60, 120.98);

/// RFC 3339 time `secs` seconds after the simulation's first Monday, 14:00 UTC (09:00 in New York).
fn at(secs: f64) -> String {
    format_time(SIM_START + 14 * 3_600_000 + (secs * 1000.0) as i64)
}

/// Where an answer came from: the home line, an anonymizing exit, or a line abroad.
#[derive(Clone, Copy)]
enum Via {
    Home,
    Exit,
    Abroad(&'static str, (f64, f64), &'static str),
}

fn answer(secs: f64, device: &str, via: Via) -> Value {
    let (ip, geo) = match via {
        Via::Home => {
            ("198.51.100.7", json!({"lat": NYC.0, "lon": NYC.1, "country": "US", "network_class": "residential"}))
        }
        Via::Exit => {
            ("203.0.113.99", json!({"lat": 52.37, "lon": 4.9, "country": "NL", "network_class": "anonymizer"}))
        }
        Via::Abroad(ip, (lat, lon), class) => (
            ip,
            json!({"lat": lat, "lon": lon, "country": if lon > 100.0 { "PH" } else { "FR" }, "network_class": class}),
        ),
    };
    json!({"type": "presence", "at": at(secs), "tenant": "acme", "worker": format!("w-{device}"), "device": device,
        "ip": ip, "outcome": "ok", "issued_at": at(secs - 30.0), "answered_at": at(secs), "geo": geo})
}

fn enroll(device: &str) -> Value {
    json!({"type": "enrollment", "at": at(-HOUR), "tenant": "acme", "worker": format!("w-{device}"), "device": device,
        "ip": "198.51.100.7", "attested": true, "format": "packed",
        "home": {"lat": NYC.0, "lon": NYC.1, "country": "US"},
        "geo": {"lat": NYC.0, "lon": NYC.1, "country": "US", "network_class": "residential"}})
}

/// Eight hourly answers on each weekday (day 0 is a Monday) for which `via(day, hour)` says where.
fn working_days(device: &str, days: std::ops::Range<usize>, via: impl Fn(usize, usize) -> Option<Via>) -> Vec<Value> {
    let mut out = vec![enroll(device)];
    for day in days.filter(|d| d % 7 < 5) {
        for h in 0..8 {
            if let Some(v) = via(day, h) {
                out.push(answer(day as f64 * DAY + h as f64 * HOUR + 120.0, device, v));
            }
        }
    }
    out
}

fn run(events: &[Value]) -> Vec<Flag> {
    let mut engine = Engine::new(RiskConfig::default()).expect("valid configuration");
    let mut flags = Vec::new();
    for e in events {
        flags.extend(engine.process(&Event::from_json(&e.to_string()).expect("a valid test event")));
    }
    flags.extend(engine.finish());
    flags
}

fn reshipped(flags: &[Flag]) -> Option<&Flag> {
    flags.iter().find(|f| f.kind.as_str() == "anonymized_egress" && f.severity == Severity::High)
}

#[test]
fn a_laptop_reshipped_abroad_is_flagged_at_its_first_leak_days_after_it_left_home() {
    // Home on Monday and Tuesday, in transit until the next Monday, then only through an
    // anonymizing exit; the real line abroad leaks once, on Wednesday of the second week.
    let events = working_days("d1", 0..10, |day, h| match day {
        0 | 1 => Some(Via::Home),
        2..=6 => None,
        9 if h == 3 => Some(Via::Abroad("192.0.2.80", FLAT_MANILA, "residential")),
        _ => Some(Via::Exit),
    });
    let flags = run(&events);
    let f = reshipped(&flags).expect("reshipped laptop flagged");
    assert_eq!(f.evidence["counted_from"], "last located at home", "{}", f.evidence);
    assert_eq!(f.evidence["hidden_share_before"], 0.0, "{}", f.evidence);
    // Flagged at the leak itself: timed from the first leak it would wait four more days.
    assert_eq!(f.at, SIM_START + 14 * 3_600_000 + ((9.0 * DAY + 3.0 * HOUR + 120.0) * 1000.0) as i64);
    assert!(f.evidence["hours_since_home"].as_i64().is_some_and(|h| h >= 96), "{}", f.evidence);
    assert_eq!(f.evidence["hours_abroad"], 0, "{}", f.evidence);
}

#[test]
fn a_traveller_abroad_without_a_vpn_is_not_reshipped() {
    // A week at a Paris venue, located there every hour.
    let events = working_days("d2", 0..12, |day, _| {
        Some(if (2..=8).contains(&day) { Via::Abroad("192.0.2.90", VENUE_PARIS, "business") } else { Via::Home })
    });
    assert!(reshipped(&run(&events)).is_none());
}

#[test]
fn a_privacy_vpn_user_on_a_trip_over_a_weekend_is_not_reshipped_but_one_gone_a_week_is() {
    // Nine answers in ten through the VPN, at home or away. Abroad Wednesday to Friday (located
    // at the venue now and then), the weekend, and through the VPN all Monday morning: since
    // the last home location that is more than 96 hours, but the laptop hid at home as much.
    let vpn_user = |home_again: usize| {
        move |day: usize, h: usize| {
            let located = (day * 8 + h).is_multiple_of(10);
            Some(match (located, day) {
                (false, _) => Via::Exit,
                (true, d) if (2..home_again).contains(&d) => Via::Abroad("192.0.2.91", VENUE_PARIS, "business"),
                (true, _) => Via::Home,
            })
        }
    };
    let trip =
        working_days("d3", 0..7, vpn_user(7)).into_iter().chain([answer(7.0 * DAY + 2.0 * HOUR, "d3", Via::Exit)]);
    let flags = run(&trip.collect::<Vec<_>>());
    assert!(reshipped(&flags).is_none(), "{:?}", reshipped(&flags).map(|f| &f.evidence));
    // Never located at home again for two weeks: a week after the first location abroad it is flagged.
    let gone = working_days("d4", 0..16, vpn_user(99));
    let flags = run(&gone);
    let f = reshipped(&flags).expect("flagged after a week");
    assert_eq!(f.evidence["counted_from"], "first located abroad", "{}", f.evidence);
    assert!(f.evidence["hours_abroad"].as_i64().is_some_and(|h| h >= 168), "{}", f.evidence);
    assert!(f.evidence["hidden_share_before"].as_f64().is_some_and(|s| s >= 0.3), "{}", f.evidence);
}
