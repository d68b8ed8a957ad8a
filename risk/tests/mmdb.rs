//! The risk engine located by MaxMind-format databases instead of event `geo`:
//! small City and ASN files written by the test kit's MMDB writer, loaded the
//! way tetherd loads them (`load_engine`, paths relative to the config file).

#[allow(dead_code)]
#[path = "../../tests/src/mmdb.rs"]
mod mmdb;

use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::Path;
use tether_risk::event::format_time;
use tether_risk::load_engine;
use tether_risk::simulate::SIM_START;
use tether_risk::{Engine, Enricher, Event, Flag, MmdbEnricher};

// Loopback /24s stand in for public networks; each device gets its own host
// address in them (one address shared by several workers is `shared_egress`).
const NEW_YORK: &str = "127.0.1";
const NEWARK: &str = "127.0.4"; // ~15 km from New York
const LAGOS: &str = "127.0.2";
const HOSTING: &str = "127.0.3"; // AS64501, classed `hosting` by the operator
const RESIDENTIAL_ISP: &str = "127.0.6"; // AS64502, not classed
const CORPORATE_VPN_IN_LAGOS: &str = "127.0.7"; // located in Lagos, AS64510 classed `corporate_vpn`
const DEVICES: [&str; 8] = ["moved", "commuter", "jumper", "flyer", "cloud", "home", "vpn", "mapped"];

fn addr(block: &str, device: &str) -> String {
    let host = DEVICES.iter().position(|d| *d == device).expect("a listed test device") + 10;
    format!("{block}.{host}")
}

fn city_db() -> Vec<u8> {
    let mut w = mmdb::Writer::new("GeoIP2-City");
    w.insert("127.0.1.0/24", &mmdb::city(40.71, -74.01, 20, "US", "New York", 5_128_581))
        .insert("127.0.4.0/24", &mmdb::city(40.74, -74.17, 20, "US", "Newark", 5_101_798))
        .insert("127.0.2.0/24", &mmdb::city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459))
        .insert("127.0.3.0/24", &mmdb::city(50.11, 8.68, 100, "DE", "Frankfurt am Main", 2_925_533))
        .insert("127.0.6.0/24", &mmdb::city(40.71, -74.01, 20, "US", "New York", 5_128_581))
        .insert("127.0.7.0/24", &mmdb::city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459));
    w.to_bytes()
}

fn asn_db() -> Vec<u8> {
    let mut w = mmdb::Writer::new("GeoLite2-ASN").record_size(24);
    w.insert("127.0.3.0/24", &mmdb::asn(64_501, "Example Hosting GmbH"))
        .insert("127.0.6.0/24", &mmdb::asn(64_502, "Example Residential Broadband"))
        .insert("127.0.7.0/24", &mmdb::asn(64_510, "Example Corp VPN"));
    w.to_bytes()
}

const NETWORKS: &str = r#"
[[networks]]
class = "hosting"
asns = [64501]
[[networks]]
class = "corporate_vpn"
asns = [64510]
"#;

/// Writes the databases and a config naming them by relative path, then loads
/// the engine as tetherd does.
fn engine_with_databases(dir: &Path) -> Engine {
    std::fs::create_dir_all(dir.join("geo")).unwrap();
    std::fs::write(dir.join("geo/city.mmdb"), city_db()).unwrap();
    std::fs::write(dir.join("geo/asn.mmdb"), asn_db()).unwrap();
    let config = dir.join("risk.toml");
    std::fs::write(&config, format!("[geo]\ncity_mmdb = \"geo/city.mmdb\"\nasn_mmdb = \"geo/asn.mmdb\"\n{NETWORKS}"))
        .unwrap();
    let engine =
        load_engine(Some(&config), |path| std::fs::read(path)).expect("the engine loads the generated databases");
    assert!(engine.geo_enabled());
    engine
}

fn at(secs: f64) -> String {
    format_time(SIM_START + 10 * 3_600_000 + (secs * 1000.0) as i64)
}

/// Events carry no `geo`: the databases locate them.
fn session(secs: f64, device: &str, block: &str) -> Value {
    json!({"type": "session", "at": at(secs), "tenant": "acme", "worker": format!("w-{device}"),
           "device": device, "ip": addr(block, device), "gateway": "vpn-1"})
}

fn enroll_at_home_in_new_york(secs: f64, device: &str) -> Value {
    json!({"type": "enrollment", "at": at(secs), "tenant": "acme", "worker": format!("w-{device}"),
           "device": device, "ip": addr(NEW_YORK, device), "attested": true, "format": "packed",
           "home": {"lat": 40.71, "lon": -74.01, "country": "US"}})
}

fn run(engine: &mut Engine, events: &[Value]) -> Vec<Flag> {
    let mut flags = Vec::new();
    for e in events {
        flags.extend(engine.process(&Event::from_json(&e.to_string()).expect("a valid test event")));
    }
    flags.extend(engine.finish());
    flags
}

fn find<'a>(flags: &'a [Flag], kind: &str, device: &str) -> Option<&'a Flag> {
    flags.iter().find(|f| f.kind.as_str() == kind && f.device == device)
}

#[test]
fn databases_locate_events_for_relocation_and_travel() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine_with_databases(dir.path());
    let flags = run(
        &mut engine,
        &[
            // Home in New York, then a session from Lagos: relocated.
            enroll_at_home_in_new_york(0.0, "moved"),
            session(60.0, "moved", LAGOS),
            // Home in New York, sessions from Newark: within the radius.
            enroll_at_home_in_new_york(0.0, "commuter"),
            session(60.0, "commuter", NEWARK),
            session(120.0, "commuter", NEW_YORK),
            // New York, then Lagos ten minutes later: impossible.
            session(0.0, "jumper", NEW_YORK),
            session(600.0, "jumper", LAGOS),
            // New York, then Lagos fourteen hours later (~600 km/h): a plausible flight.
            session(0.0, "flyer", NEW_YORK),
            session(14.0 * 3600.0, "flyer", LAGOS),
        ],
    );
    let relocated = find(&flags, "relocated", "moved").expect("relocated from the City database");
    assert_eq!(relocated.evidence["location"]["country"], "NG", "{}", relocated.evidence);
    assert_eq!(relocated.evidence["country_changed"], true);
    assert!(relocated.evidence["distance_km"].as_f64().unwrap() > 8_000.0, "{}", relocated.evidence);
    assert!(relocated.evidence.get("geo_signals").is_none(), "{}", relocated.evidence);

    let travel = find(&flags, "impossible_travel", "jumper").expect("impossible_travel from the City database");
    assert_eq!(travel.evidence["from"]["country"], "US", "{}", travel.evidence);
    assert_eq!(travel.evidence["to"]["country"], "NG", "{}", travel.evidence);
    assert!(travel.evidence["kmh"].as_f64().unwrap() > 805.0, "{}", travel.evidence);

    for quiet in ["commuter", "flyer"] {
        let mine: Vec<&str> = flags
            .iter()
            .filter(|f| f.device == quiet && f.kind.as_str() != "relocated")
            .map(|f| f.kind.as_str())
            .collect();
        assert!(mine.is_empty(), "{quiet}: {mine:?}");
    }
    assert!(find(&flags, "relocated", "commuter").is_none());
}

#[test]
fn network_classes_by_asn_from_the_asn_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine_with_databases(dir.path());
    let flags = run(
        &mut engine,
        &[
            session(0.0, "cloud", HOSTING),
            session(0.0, "home", RESIDENTIAL_ISP),
            // A corporate VPN exit: its location is the VPN's, not the worker's.
            enroll_at_home_in_new_york(0.0, "vpn"),
            session(60.0, "vpn", CORPORATE_VPN_IN_LAGOS),
            session(120.0, "vpn", NEW_YORK),
        ],
    );
    let anonymized = find(&flags, "anonymized_egress", "cloud").expect("hosting ASN → anonymized_egress");
    assert_eq!(anonymized.evidence["asn"], 64_501, "{}", anonymized.evidence);
    assert_eq!(anonymized.evidence["network_class"], "hosting");
    assert_eq!(anonymized.evidence["country"], "DE");
    assert!(find(&flags, "anonymized_egress", "home").is_none(), "an unclassed ASN is not anonymizing");
    let vpn: Vec<&str> = flags.iter().filter(|f| f.device == "vpn").map(|f| f.kind.as_str()).collect();
    assert!(vpn.is_empty(), "a corporate VPN exit hides the location and is not anonymizing: {vpn:?}");
}

#[test]
fn ipv4_mapped_ipv6_looks_up_as_ipv4() {
    // The writer puts IPv4 under ::/96 only, so a reader asked for the
    // ::ffff: form directly would miss: the enricher must canonicalize.
    let raw = maxminddb::Reader::from_source(city_db()).unwrap();
    assert!(!raw.lookup("::ffff:127.0.1.5".parse().unwrap()).unwrap().has_data());

    let enricher = MmdbEnricher::from_bytes(Some(city_db()), Some(asn_db())).unwrap();
    let v4: IpAddr = "127.0.1.5".parse().unwrap();
    let mapped: IpAddr = "::ffff:127.0.1.5".parse().unwrap();
    let located = enricher.lookup(v4).expect("New York");
    assert_eq!(located.country.as_deref(), Some("US"));
    assert_eq!(enricher.lookup(mapped), Some(located));
    let hosting = enricher.lookup("::ffff:127.0.3.9".parse().unwrap()).expect("hosting");
    assert_eq!(hosting.asn, Some(64_501));
    assert_eq!(enricher.lookup("::ffff:127.0.9.9".parse().unwrap()), None);

    // Through the engine, with an event whose address was not canonicalized by its caller.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine_with_databases(dir.path());
    let mut flags = Vec::new();
    for (secs, ip) in [(0.0, "::ffff:127.0.1.5"), (600.0, "::ffff:127.0.2.5"), (900.0, "::ffff:127.0.3.5")] {
        let mut event = Event::from_json(&session(secs, "mapped", LAGOS).to_string()).unwrap();
        event.ip = ip.parse().unwrap();
        flags.extend(engine.process(&event));
    }
    assert!(find(&flags, "impossible_travel", "mapped").is_some(), "{flags:?}");
    assert!(find(&flags, "anonymized_egress", "mapped").is_some(), "{flags:?}");
}

#[test]
fn without_databases_evidence_says_geo_signals_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("risk.toml");
    // The hosting range is classed by CIDR so that a flag fires without any database.
    std::fs::write(&config, "[[networks]]\nclass = \"hosting\"\ncidrs = [\"127.0.3.0/24\"]\n").unwrap();
    let mut engine = load_engine(Some(&config), |path| std::fs::read(path)).unwrap();
    assert!(!engine.geo_enabled());
    let flags = run(&mut engine, &[session(0.0, "jumper", NEW_YORK), session(600.0, "jumper", LAGOS)]);
    assert!(flags.is_empty(), "nothing is located without a database: {flags:?}");
    let flags = run(&mut engine, &[session(700.0, "cloud", HOSTING)]);
    let anonymized = find(&flags, "anonymized_egress", "cloud").expect("CIDR class");
    let off = anonymized.evidence["geo_signals"].as_str().unwrap_or_default();
    assert!(off.starts_with("off:"), "{}", anonymized.evidence);

    // With the databases the same flag does not say so.
    let mut engine = engine_with_databases(dir.path());
    let flags = run(&mut engine, &[session(0.0, "cloud", HOSTING)]);
    let anonymized = find(&flags, "anonymized_egress", "cloud").expect("ASN class");
    assert!(anonymized.evidence.get("geo_signals").is_none(), "{}", anonymized.evidence);
}

#[test]
fn a_missing_or_corrupt_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("risk.toml");
    std::fs::write(&config, "[geo]\ncity_mmdb = \"absent.mmdb\"\n").unwrap();
    let error = load_engine(Some(&config), |path| std::fs::read(path)).err().expect("a missing database is an error");
    assert!(error.contains(&dir.path().join("absent.mmdb").display().to_string()), "{error}");
    std::fs::write(dir.path().join("absent.mmdb"), b"not a database").unwrap();
    let error = load_engine(Some(&config), |path| std::fs::read(path)).err().expect("a corrupt database is an error");
    assert!(error.contains("not a valid MMDB"), "{error}");
}
