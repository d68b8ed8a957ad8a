//! Population simulator and precision/recall evaluation of `farm_suspected`.
//!
//! Deterministic for a seed, no network, no clock, no probe rounds (it stands
//! for an event log). Honest workers and hard negatives: at home in many
//! cities, roommates of 2–3 employers, co-living houses, coworking members
//! (half their weekdays there), conference and hotel trips of a day or two,
//! households behind an ISP's carrier-grade NAT (20–30 households of many
//! employers on one IPv4, each its own LAN), mobile tethering, offices and
//! corporate VPNs, privacy VPNs, honest TeamViewer/AnyDesk users, wireless
//! keyboard-and-mouse receivers. Planted farms of 3–12 employers' laptops in one
//! house for the whole run, one [`FarmStyle`] each: walked-room sweeps (fast or
//! careful), quiet remote operators, remote-desktop tools, KVM-over-IP boxes with
//! default or spoofed USB ids, reshipped abroad behind VPN/hosting exits with
//! occasional leaks, or one TPM enrolled for several identities; half of them
//! with several workers declaring the facilitator's address as home.

mod population;
mod rng;
mod timeline;
mod world;

use std::collections::{BTreeMap, HashSet};

use ipnet::IpNet;

use super::config::{NetworkRule, OfficeRule, RiskConfig};
use super::engine::Engine;
use super::event::Event;
use super::geo::NetworkClass;
pub use population::FarmStyle;
use population::World;
use timeline::Timeline;

/// 2026-01-05T00:00:00Z, a Monday.
pub const SIM_START: i64 = 1_767_571_200_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub workers: usize,
    pub days: u32,
    pub seed: u64,
    /// Share of workers whose laptop sits in a farm.
    pub farm_share: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { workers: 10_000, days: 14, seed: 7, farm_share: 0.03 }
    }
}

/// The simulated population and the operator configuration that goes with it.
pub struct Simulation {
    world: World,
    cfg: SimConfig,
}

impl Simulation {
    pub fn new(cfg: SimConfig) -> Self {
        Self { world: World::build(&cfg), cfg }
    }

    /// The operator's configuration: corporate VPN ranges and registered offices.
    pub fn risk_config(&self) -> RiskConfig {
        let mut config = RiskConfig::default();
        let host = |addr: u32| IpNet::from(std::net::IpAddr::V4(addr.into()));
        config.networks.push(NetworkRule {
            class: NetworkClass::CorporateVpn,
            cidrs: self.world.tenants.iter().filter_map(|t| t.vpn.as_ref().map(|p| host(p.addr))).collect(),
            asns: Vec::new(),
            name: Some("tenants' VPN concentrators".into()),
        });
        for (i, t) in self.world.tenants.iter().enumerate() {
            let cidrs: Vec<IpNet> =
                t.offices.iter().filter(|(_, _, registered)| *registered).map(|(_, p, _)| host(p.addr)).collect();
            if !cidrs.is_empty() {
                config.offices.push(OfficeRule { tenant: format!("t{i}"), cidrs, name: None });
            }
        }
        config
    }

    fn worker(&self, device: &str) -> Option<&population::Worker> {
        let index: usize = device.strip_prefix('d')?.parse().ok()?;
        self.world.workers.get(index)
    }

    /// The style of the farm device `d{index}` sits in, if any.
    pub fn farm_style(&self, device: &str) -> Option<FarmStyle> {
        self.worker(device).and_then(|w| w.farm).map(|f| self.world.farms[f].style)
    }

    /// Ground truth: whether device `d{index}` is a farm laptop.
    pub fn is_farm(&self, device: &str) -> Option<bool> {
        Some(self.worker(device)?.farm.is_some())
    }

    /// The honest worker's kind (or `farm`).
    pub fn category(&self, device: &str) -> &'static str {
        self.worker(device).map_or("unknown", |w| w.category)
    }

    pub fn workers(&self) -> usize {
        self.world.workers.len()
    }

    /// Produces every event in time order.
    pub fn events(&self, mut sink: impl FnMut(Event)) {
        let mut timeline = Timeline::new(&self.world, SIM_START, self.cfg.seed);
        let mut counters = vec![0u64; self.world.workers.len()];
        let mut sink = |mut event: Event| {
            // Signature counters advance in the order the answers were made.
            if let super::event::EventBody::Presence(p) = &mut event.body
                && let Some(count) = p.sign_count.as_mut()
                && *count > 0
                && let Some(c) = event
                    .device
                    .strip_prefix('d')
                    .and_then(|d| d.parse::<usize>().ok())
                    .and_then(|w| counters.get_mut(w))
            {
                *c += 1;
                *count = *c;
            }
            sink(event);
        };
        let mut pending: Vec<Event> = (0..self.world.workers.len()).map(|w| timeline.enrollment(w)).collect();
        for hour in 0..i64::from(self.cfg.days) * 24 {
            timeline.hour(hour, &mut pending);
            pending.sort_by_key(|e| e.at);
            let horizon = SIM_START + (hour + 1) * 3_600_000;
            let keep = pending.partition_point(|e| e.at < horizon);
            let later = pending.split_off(keep);
            pending.drain(..).for_each(&mut sink);
            pending = later;
        }
        pending.sort_by_key(|e| e.at);
        pending.into_iter().for_each(sink);
    }

    /// Runs the engine over the population and scores `farm_suspected`, and which
    /// devices ever carried an access-denying (`high`) flag.
    pub fn evaluate(&self) -> Result<Evaluation, String> {
        let mut engine = Engine::new(self.risk_config())?;
        let mut events = 0u64;
        let mut flags = 0u64;
        let mut denied: HashSet<String> = HashSet::new();
        let mut count = |raised: Vec<super::flag::Flag>| {
            flags += raised.len() as u64;
            for f in raised.into_iter().filter(|f| f.severity == super::flag::Severity::High) {
                denied.insert(f.device);
            }
        };
        self.events(|e| {
            events += 1;
            count(engine.process(&e));
        });
        count(engine.finish());
        let mut eval = Evaluation { events, flags, ..Evaluation::default() };
        for s in engine.summaries() {
            let Some(farm) = self.is_farm(&s.device) else { continue };
            let high = denied.contains(&s.device);
            if farm {
                let style = self.farm_style(&s.device).map_or("unknown", FarmStyle::as_str);
                eval.by_style.entry(style).or_default().add(s.farm_suspected, high);
            } else {
                eval.by_category.entry(self.category(&s.device)).or_default().add(s.farm_suspected, high);
            }
            match (farm, s.farm_suspected) {
                (true, true) => eval.true_positives += 1,
                (true, false) => eval.false_negatives += 1,
                (false, true) => eval.false_positives += 1,
                (false, false) => eval.true_negatives += 1,
            }
        }
        Ok(eval)
    }
}

/// Devices of one farm style or honest kind: how many, how many `farm_suspected`,
/// how many ever carried a `high` flag (denied under the default flag policy).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub devices: u64,
    pub suspected: u64,
    pub denied: u64,
}

impl Counts {
    fn add(&mut self, suspected: bool, denied: bool) {
        self.devices += 1;
        self.suspected += u64::from(suspected);
        self.denied += u64::from(denied);
    }

    pub fn merge(&mut self, other: &Counts) {
        self.devices += other.devices;
        self.suspected += other.suspected;
        self.denied += other.denied;
    }
}

#[derive(Debug, Default, Clone)]
pub struct Evaluation {
    pub events: u64,
    pub flags: u64,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
    /// Farm laptops per farm style.
    pub by_style: BTreeMap<&'static str, Counts>,
    /// Honest laptops per kind (home, roommates, isp_cgnat, coworking, conference, …).
    pub by_category: BTreeMap<&'static str, Counts>,
}

impl Evaluation {
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }
    /// False positives among honest devices.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.false_positives, self.false_positives + self.true_negatives)
    }
    /// Share of honest devices that ever carried a `high` flag.
    pub fn honest_denied(&self) -> f64 {
        let (denied, all) = self.by_category.values().fold((0, 0), |(d, a), c| (d + c.denied, a + c.devices));
        ratio(denied, all)
    }
    /// Share of farm devices that ever carried a `high` flag.
    pub fn farm_denied(&self) -> f64 {
        let (denied, all) = self.by_style.values().fold((0, 0), |(d, a), c| (d + c.denied, a + c.devices));
        ratio(denied, all)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// One event as a JSON Lines record of the `tether analyze` contract.
pub fn event_json(e: &Event) -> serde_json::Value {
    use super::event::{EventBody, format_time};
    let mut v = serde_json::json!({
        "at": format_time(e.at), "tenant": e.tenant, "worker": e.worker, "device": e.device, "ip": e.ip.to_string(),
    });
    let Some(map) = v.as_object_mut() else { return v };
    if let Some(geo) = &e.geo {
        map.insert("geo".into(), serde_json::to_value(geo).unwrap_or_default());
    }
    match &e.body {
        EventBody::Enrollment(en) => {
            map.insert("type".into(), "enrollment".into());
            map.insert("attested".into(), en.attested.into());
            map.insert("format".into(), en.format.clone().into());
            if let Some(h) = &en.hardware {
                map.insert("hardware".into(), h.clone().into());
            }
            if let Some(h) = &en.home {
                map.insert("home".into(), serde_json::json!({"lat": h.lat, "lon": h.lon, "country": h.country}));
            }
        }
        EventBody::Presence(p) => {
            map.insert("type".into(), "presence".into());
            let outcome = match p.outcome {
                super::event::Outcome::Ok => "ok",
                super::event::Outcome::Missed => "missed",
                super::event::Outcome::Failed => "failed",
            };
            map.insert("outcome".into(), outcome.into());
            map.insert("issued_at".into(), p.issued_at.map(format_time).into());
            map.insert("answered_at".into(), p.answered_at.map(format_time).into());
            if let Some(c) = p.sign_count {
                map.insert("sign_count".into(), c.into());
            }
            if let Some(t) = p.tpm {
                map.insert("tpm".into(), serde_json::json!({"clock": t.clock, "reset_count": t.reset_count, "restart_count": t.restart_count}));
            }
            if let Some(po) = &p.posture {
                let usb: Vec<_> = po.usb.iter().map(|u| serde_json::to_value(u).unwrap_or_default()).collect();
                let lan = po.lan.as_ref().map(|l| serde_json::json!({"gateway_mac_hash": l.gateway_mac_hash, "wifi_bssid_hash": l.wifi_bssid_hash}));
                map.insert(
                    "posture".into(),
                    serde_json::json!({"usb": usb, "processes": po.processes, "displays": po.displays, "lan": lan}),
                );
            }
        }
        EventBody::Session(s) => {
            map.insert("type".into(), "session".into());
            map.insert("gateway".into(), s.gateway.clone().into());
        }
    }
    v
}
