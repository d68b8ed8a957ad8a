//! The `tether analyze` input: a JSON Lines event log, read line by line the way
//! clients/tether/src/analyze.rs reads it, parsed by `tether_risk::Event::from_json` and
//! replayed through the risk engine the service runs.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use tether_risk::{Engine, Event, RiskConfig};

fn config() -> &'static RiskConfig {
    static CFG: OnceLock<RiskConfig> = OnceLock::new();
    CFG.get_or_init(RiskConfig::default)
}

/// Every parsed event is processed; every flag names a device that was seen and serialises
/// (as `tether analyze` prints it); summaries cover exactly the devices seen, with risk
/// 0-100 and at least 80 when a farm is suspected.
pub fn analyze_events(data: &[u8]) {
    let Ok(mut engine) = Engine::new(config().clone()) else { panic!("the default risk configuration is refused") };
    let mut seen = BTreeSet::new();
    let mut flags = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else { continue };
        if text.trim().is_empty() {
            continue;
        }
        let Ok(event) = Event::from_json(text) else { continue };
        assert!(!event.tenant.is_empty() && !event.worker.is_empty() && !event.device.is_empty());
        assert!(event.ip == event.ip.to_canonical(), "addresses are canonical");
        seen.insert((event.tenant.clone(), event.device.clone()));
        flags.extend(engine.process(&event));
    }
    flags.extend(engine.finish());
    for flag in &flags {
        assert!(seen.contains(&(flag.tenant.clone(), flag.device.clone())), "flag for an unseen device");
        assert!(serde_json::to_string(flag).is_ok(), "flag does not serialise");
    }
    let summaries: Vec<_> = engine.summaries().collect();
    assert_eq!(summaries.len(), seen.len(), "one summary per device");
    for summary in &summaries {
        assert!(summary.risk <= 100);
        assert!(!summary.farm_suspected || summary.risk >= 80);
        assert!(serde_json::to_string(summary).is_ok());
    }
}
