//! `presence_burst` from probe rounds at engine level: missed probe challenges
//! count in their round, a clock closes the last round, and the `[probes]`
//! cadence is validated against the burst signal it has to feed.

use serde_json::{Value, json};
use tether_risk::event::{format_time, parse_time};
use tether_risk::simulate::SIM_START;
use tether_risk::{Engine, Event, Flag, RiskConfig};

const IP: &str = "198.51.100.40";
const FARM: [(&str, &str); 4] = [("a", "f1"), ("b", "f2"), ("a", "f3"), ("b", "f4")];

fn at(secs: f64) -> String {
    format_time(SIM_START + 10 * 3_600_000 + (secs * 1000.0) as i64)
}

fn base(secs: f64, tenant: &str, device: &str, ip: &str) -> Value {
    json!({"type": "presence", "at": at(secs), "tenant": tenant, "worker": format!("w-{device}"), "device": device,
           "ip": ip})
}

fn answer(secs: f64, issued: f64, (tenant, device): (&str, &str)) -> Value {
    let mut v = base(secs, tenant, device, IP);
    v["outcome"] = "ok".into();
    v["issued_at"] = at(issued).into();
    v["answered_at"] = at(secs).into();
    v
}

/// A miss as tetherd records it: no address, after the deadline.
fn miss(secs: f64, issued: f64, (tenant, device): (&str, &str), probe: bool) -> Value {
    let mut v = base(secs, tenant, device, "0.0.0.0");
    v["outcome"] = "missed".into();
    v["issued_at"] = at(issued).into();
    if probe {
        v["probe"] = true.into();
    }
    v
}

/// The four laptops of two employers seen behind the address (the cluster a probe goes to).
fn cluster() -> Vec<Value> {
    FARM.iter()
        .enumerate()
        .map(|(i, (tenant, device))| {
            let mut v = base(i as f64 - 100.0, tenant, device, IP);
            v["type"] = "session".into();
            v
        })
        .collect()
}

/// `n` rounds an hour apart: the first two members answer 6 s apart, the
/// other two miss the 60 s deadline.
fn half_answered_rounds(n: usize, probe: bool) -> Vec<Value> {
    let mut events = cluster();
    for r in 0..n {
        let issued = r as f64 * 3600.0;
        events.push(answer(issued + 10.0, issued, FARM[0]));
        events.push(answer(issued + 16.0, issued, FARM[1]));
        events.push(miss(issued + 61.0, issued, FARM[2], probe));
        events.push(miss(issued + 61.0, issued, FARM[3], probe));
    }
    events
}

fn engine(config: &str) -> Engine {
    Engine::new(RiskConfig::parse(config).expect("valid configuration")).expect("engine")
}

fn process(engine: &mut Engine, events: &[Value]) -> Vec<Flag> {
    events.iter().flat_map(|e| engine.process(&Event::from_json(&e.to_string()).expect("a valid event"))).collect()
}

fn bursts(flags: &[Flag]) -> Vec<&Flag> {
    flags.iter().filter(|f| f.kind.as_str() == "presence_burst").collect()
}

#[test]
fn missed_probe_challenges_count_in_their_round() {
    let mut e = engine("");
    let mut flags = process(&mut e, &half_answered_rounds(6, true));
    flags.extend(e.finish());
    let raised = bursts(&flags);
    let mut devices: Vec<&str> = raised.iter().map(|f| f.device.as_str()).collect();
    devices.sort_unstable();
    assert_eq!(devices, ["f1", "f2", "f3", "f4"], "the members that missed were probed with the rest: {flags:?}");
    let evidence = &raised[0].evidence;
    assert!(evidence["serialized_rounds"].as_u64().is_some_and(|n| n >= 5), "{evidence}");
    assert_eq!(evidence["recent_rounds"][0]["missed"], json!(["f3", "f4"]), "{evidence}");
    let issued = evidence["serialized_rounds_issued_at"].as_array().expect("the rounds are named");
    assert_eq!(issued.first(), Some(&json!(at(0.0))), "{evidence}");
}

#[test]
fn misses_of_ordinary_challenges_and_rounds_answered_at_once_are_no_burst() {
    // The same pattern without the probe marker: two answers are too few for a round.
    let mut e = engine("");
    let mut flags = process(&mut e, &half_answered_rounds(6, false));
    flags.extend(e.finish());
    assert!(bursts(&flags).is_empty(), "{flags:?}");
    // Probed members answering together (within a second), two missing: not serialized.
    let mut events = cluster();
    for r in 0..6 {
        let issued = r as f64 * 3600.0;
        events.push(answer(issued + 10.0, issued, FARM[0]));
        events.push(answer(issued + 10.4, issued, FARM[1]));
        events.push(miss(issued + 61.0, issued, FARM[2], true));
        events.push(miss(issued + 61.0, issued, FARM[3], true));
    }
    let mut e = engine("");
    let mut flags = process(&mut e, &events);
    flags.extend(e.finish());
    assert!(bursts(&flags).is_empty(), "{flags:?}");
}

#[test]
fn a_clock_judges_the_last_round_once_dated_when_it_was_due() {
    let mut e = engine("[presence_burst]\nmin_rounds = 3\n");
    let events = half_answered_rounds(3, true);
    assert!(bursts(&process(&mut e, &events)).is_empty(), "the last round is still open");
    let last_issued = parse_time("at", &at(2.0 * 3600.0)).expect("time");
    let due = last_issued + 600_000;
    assert!(e.close_due_rounds(due - 1).is_empty(), "not before round_close_secs");
    let flags = e.close_due_rounds(due + 5_000);
    assert_eq!(bursts(&flags).len(), 4, "{flags:?}");
    assert!(flags.iter().all(|f| f.at == due), "dated when the round was due, not when the clock looked: {flags:?}");
    assert!(e.close_due_rounds(due + 10_000).is_empty(), "raised once");
}

#[test]
fn the_cadence_is_validated_against_the_burst_signal() {
    assert_eq!(RiskConfig::default().probe_rounds(), 5, "defaults to presence_burst.min_rounds");
    assert_eq!(RiskConfig::parse("[presence_burst]\nmin_rounds = 7\n").expect("config").probe_rounds(), 7);
    assert_eq!(RiskConfig::parse("[probes]\nrounds = 2\n").expect("config").probe_rounds(), 2);
    let rejected = [
        ("[probes]\ndeadline_secs = 600\n", "presence_burst.round_close_secs"),
        ("[probes]\ninterval_secs = 30\n", "probes.interval_secs"),
        ("[probes]\nrounds = 30\ninterval_secs = 3600\n", "presence_burst.window_hours"),
        ("[probes]\nrounds = 0\n", "probes.rounds"),
        ("[probes]\nround = 3\n", "round"),
    ];
    for (config, names) in rejected {
        let error = RiskConfig::parse(config).expect_err(config);
        assert!(error.contains(names), "{config}: {error}");
    }
    // Disabled probes constrain nothing but their own ranges.
    assert!(RiskConfig::parse("[probes]\nenabled = false\ndeadline_secs = 600\ninterval_secs = 1\n").is_ok());
}
