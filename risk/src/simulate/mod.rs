//! Population simulator and precision/recall evaluation of `farm_suspected`.
//!
//! Deterministic for a seed, no network, no clock. Tenants with offices and
//! corporate VPNs; workers at home in many cities, roommates of different
//! employers, coworking members, conference travelers (some abroad), mobile
//! tethering, personal VPNs, a few honest remote-desktop users; and planted
//! laptop farms of 3-9 employers' laptops in one house — answered serially by
//! a facilitator, or carefully spaced, or remotely through KVM-over-IP boxes and
//! remote-desktop tools — some reshipped abroad (directly or behind a VPN).

mod population;
mod rng;
mod timeline;
mod world;

use std::collections::HashMap;

use ipnet::IpNet;

use super::config::{NetworkRule, OfficeRule, RiskConfig};
use super::engine::Engine;
use super::event::Event;
use super::geo::NetworkClass;
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

    /// Farm laptops that show no behaviour at all (no serial facilitator, no
    /// KVM, no remote-control tool): only their shared egress gives them away.
    pub fn is_silent_farm(&self, device: &str) -> bool {
        let index = device.strip_prefix('d').and_then(|d| d.parse::<usize>().ok());
        index.and_then(|i| self.world.workers.get(i)).is_some_and(|w| {
            w.farm.is_some_and(|f| self.world.farms[f].facilitator != population::Facilitator::Serial)
                && w.usb.is_none()
                && w.remote_tool.is_none()
        })
    }

    /// Ground truth: whether device `d{index}` is a farm laptop.
    pub fn is_farm(&self, device: &str) -> Option<bool> {
        let index: usize = device.strip_prefix('d')?.parse().ok()?;
        Some(self.world.workers.get(index)?.farm.is_some())
    }

    pub fn category(&self, device: &str) -> &'static str {
        let index = device.strip_prefix('d').and_then(|d| d.parse::<usize>().ok());
        index.and_then(|i| self.world.workers.get(i)).map_or("unknown", |w| w.category)
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

    /// Runs the engine over the population and scores `farm_suspected`.
    pub fn evaluate(&self) -> Result<Evaluation, String> {
        let mut engine = Engine::new(self.risk_config())?;
        let mut events = 0u64;
        let mut flags = 0u64;
        self.events(|e| {
            events += 1;
            flags += engine.process(&e).len() as u64;
        });
        flags += engine.finish().len() as u64;
        let mut eval = Evaluation { events, flags, ..Evaluation::default() };
        for s in engine.summaries() {
            match (self.is_farm(&s.device), s.farm_suspected) {
                (Some(true), true) => eval.true_positives += 1,
                (Some(true), false) => {
                    eval.false_negatives += 1;
                    eval.missed_silent += u64::from(self.is_silent_farm(&s.device));
                }
                (Some(false), true) => {
                    eval.false_positives += 1;
                    *eval.false_positives_by_category.entry(self.category(&s.device)).or_default() += 1;
                }
                (Some(false), false) => eval.true_negatives += 1,
                (None, _) => {}
            }
        }
        Ok(eval)
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
    /// Missed farm laptops that showed nothing but a shared egress.
    pub missed_silent: u64,
    pub false_positives_by_category: HashMap<&'static str, u64>,
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
                let usb: Vec<_> = po.usb.iter().map(|u| serde_json::json!({"vid": u.vid, "pid": u.pid, "manufacturer": u.manufacturer, "product": u.product})).collect();
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
