//! The engine: one call per event, flags out, bounded state inside.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Millis;
use super::config::RiskConfig;
use super::event::{Event, EventBody, Home, Outcome};
use super::flag::{DeviceSummary, Flag, FlagKind, Severity};
use super::geo::{Enricher, Geo, NetworkClass, NoEnricher};
use super::hours::WorkingHours;
use super::network::{EgressKey, Networks};
use super::signals::egress::EgressState;
use super::signals::posture::CompiledRules;
use super::signals::shared_hardware::HardwareUse;
use super::state::{DeviceState, HomePoint, Ids, Point, WorkerState};

pub(crate) const HOUR: Millis = 3_600_000;

/// Where and how a device was seen by one event, after enrichment.
pub(crate) struct Sighting<'a> {
    pub at: Millis,
    pub ip: IpAddr,
    pub geo: Option<&'a Geo>,
    pub class: Option<NetworkClass>,
    /// Set only when the location is meaningful (not a VPN, hosting or anonymizer exit).
    pub point: Option<Point>,
    /// Whether tetherd itself saw the device at `ip`: the address of its own connection for an
    /// enrollment or a hardware-signed presence answer. A session's address is what a gateway
    /// reported, which its tenant controls.
    pub observed: bool,
}

/// A signal's verdict on one device, before de-duplication.
pub(crate) struct Finding {
    pub device: u32,
    pub kind: FlagKind,
    pub severity: Severity,
    pub evidence: serde_json::Value,
}

/// A request to the service: challenge these devices at the same moment with a
/// short deadline, so that one person answering for all of them shows as a
/// serialized `presence_burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    pub at: Millis,
    pub egress: String,
    /// `(tenant, device)` pairs.
    pub devices: Vec<(String, String)>,
}

/// The risk engine. Feed events in time order with [`Engine::process`]; each
/// call returns the flags that event raised. Memory is bounded by the number of
/// devices and workers plus windowed, capped per-egress state.
pub struct Engine {
    pub(crate) cfg: RiskConfig,
    pub(crate) enricher: Box<dyn Enricher>,
    pub(crate) networks: Networks,
    pub(crate) rules: CompiledRules,
    pub(crate) ids: Ids,
    pub(crate) devices: Vec<DeviceState>,
    pub(crate) workers: Vec<WorkerState>,
    pub(crate) egress: HashMap<EgressKey, EgressState>,
    pub(crate) probes: Vec<ProbeRequest>,
    /// Enrollments per hardware hash (`shared_hardware`), capped.
    pub(crate) hardware: HashMap<Box<str>, Vec<HardwareUse>>,
    /// Hardware hashes in the order first seen (which to forget when full).
    pub(crate) hardware_order: std::collections::VecDeque<Box<str>>,
    /// Stated homes by place (`home_collision`): one entry per worker at most.
    pub(crate) homes: super::signals::home::HomeGrid,
    last_sweep: Millis,
    latest: Millis,
}

impl Engine {
    /// An engine without IP databases: only events carrying `geo` are located.
    pub fn new(cfg: RiskConfig) -> Result<Self, String> {
        Self::with_enricher(cfg, Box::new(NoEnricher))
    }

    pub fn with_enricher(cfg: RiskConfig, enricher: Box<dyn Enricher>) -> Result<Self, String> {
        cfg.validate()?;
        let rules = CompiledRules::new(&cfg.remote_control)?;
        Ok(Self {
            networks: Networks::new(&cfg.networks, &cfg.offices),
            rules,
            cfg,
            enricher,
            ids: Ids::default(),
            devices: Vec::new(),
            workers: Vec::new(),
            egress: HashMap::new(),
            probes: Vec::new(),
            hardware: HashMap::new(),
            hardware_order: std::collections::VecDeque::new(),
            homes: Default::default(),
            last_sweep: Millis::MIN,
            latest: Millis::MIN,
        })
    }

    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    /// Whether an IP database is configured (otherwise geo signals need `geo` on events).
    pub fn geo_enabled(&self) -> bool {
        self.enricher.enabled()
    }

    /// Declares a worker's home (as an admin would), replacing one learned at enrollment.
    pub fn set_home(&mut self, tenant: &str, worker: &str, home: &Home) {
        let t = self.ids.tenant(tenant);
        let w = self.worker_index(t, worker);
        self.workers[w as usize].declared_home = Some(home_point(home));
        self.place_home(w);
    }

    /// Sets what an administrator declared for a worker, replacing any earlier
    /// declaration: `None` removes the home or the working hours.
    pub fn declare(&mut self, tenant: &str, worker: &str, home: Option<&Home>, hours: Option<WorkingHours>) {
        let t = self.ids.tenant(tenant);
        let w = self.worker_index(t, worker) as usize;
        self.workers[w].declared_home = home.map(home_point);
        self.workers[w].hours = hours;
        self.place_home(w as u32);
    }

    /// Replaces the office egresses a tenant's admin registered (on top of the
    /// operator's `[[offices]]`): its devices there never count as shared.
    pub fn register_offices(&mut self, tenant: &str, cidrs: &[ipnet::IpNet]) {
        self.networks.register_offices(tenant, cidrs);
    }

    /// Where the worker's first device enrolled from stands in for a home
    /// until one is declared: kept across restarts by the store, which hands
    /// the enrollment's address back with every event. Does nothing when the
    /// worker already has an enrollment home or the address cannot be located
    /// (no IP database, or a network class that hides the location).
    pub fn learn_enrollment_home(&mut self, tenant: &str, worker: &str, ip: IpAddr) {
        let t = self.ids.tenant(tenant);
        let w = self.worker_index(t, worker) as usize;
        if self.workers[w].enrolled_home.is_some() {
            return;
        }
        let Some(geo) = self.enricher.lookup(ip) else { return };
        let class = self.networks.classify(ip, geo.asn, geo.network_class);
        if class.is_some_and(NetworkClass::hides_location) {
            return;
        }
        if let Some((lat, lon)) = geo.point() {
            self.workers[w].enrolled_home =
                Some(HomePoint { lat, lon, country: geo.country.as_deref().map(Into::into) });
        }
    }

    /// Evaluates one event and returns the flags it raised (already de-duplicated).
    pub fn process(&mut self, event: &Event) -> Vec<Flag> {
        let at = event.at;
        self.latest = self.latest.max(at);
        let tenant = self.ids.tenant(&event.tenant);
        let worker = self.worker_index(tenant, &event.worker);
        let (device, new) = self.ids.device(tenant, &event.device, self.devices.len());
        if new {
            self.devices.push(DeviceState::new(&event.device, tenant, worker));
        } else {
            self.devices[device as usize].worker = worker;
        }

        let looked_up;
        let geo = match &event.geo {
            Some(g) => Some(g),
            None => {
                looked_up = self.enricher.lookup(event.ip);
                looked_up.as_ref()
            }
        };
        let class = self.networks.classify(event.ip, geo.and_then(|g| g.asn), geo.and_then(|g| g.network_class));
        let point = geo.filter(|_| !class.is_some_and(NetworkClass::hides_location)).and_then(|g| {
            g.point().map(|(lat, lon)| Point {
                lat,
                lon,
                accuracy_km: g.accuracy(),
                country: g.country.as_deref().map(Into::into),
                at,
                ip: event.ip,
            })
        });
        let observed = !matches!(event.body, EventBody::Session(_));
        let s = Sighting { at, ip: event.ip, geo, class, point, observed };
        let mut findings = Vec::new();

        let present = match &event.body {
            EventBody::Enrollment(e) => {
                self.on_enrollment(device, worker, e, &s, &mut findings);
                true
            }
            EventBody::Presence(p) => {
                match p.outcome {
                    Outcome::Ok => self.on_presence_answer(device, p, &s, &mut findings),
                    Outcome::Missed => {
                        if let (true, Some(issued)) = (p.probe, p.issued_at) {
                            self.observe_probe_miss(device, issued);
                        }
                        self.on_presence_missed(device, worker, p, at, &mut findings)
                    }
                    Outcome::Failed => {}
                }
                p.outcome == Outcome::Ok
            }
            EventBody::Session(_) => true,
        };
        if present {
            self.check_location(device, worker, &s, &mut findings);
            self.check_network(device, &s, &mut findings);
            let lan = match &event.body {
                EventBody::Presence(p) => p.posture.as_ref().and_then(|p| p.lan.as_ref()),
                _ => None,
            };
            self.observe_egress(device, &s, lan, &mut findings);
            // After the egress update, so this sighting is among the ones seen together.
            let before = findings.len();
            self.check_home_collision(device, worker, &s, lan, &mut findings);
            self.mark_home_clusters(&findings[before..]);
        }
        self.maybe_sweep(at, &mut findings);
        let geo_known = geo.is_some();
        self.emit(findings, at, geo_known)
    }

    /// Ends the replay: closes open presence rounds and returns what that raised.
    pub fn finish(&mut self) -> Vec<Flag> {
        let mut findings = Vec::new();
        self.close_all_rounds(&mut findings);
        self.close_stale_chains(Millis::MAX, &mut findings);
        self.emit(findings, self.latest, true)
    }

    /// Closes the presence rounds whose time is up by `now` (a clock, for a
    /// service whose rounds must be judged even when no later answer arrives
    /// behind their egress) and returns what that raised. Each flag is dated
    /// when its round was due to close, so replicas calling this at different
    /// moments raise equal flags. A log replay ([`Engine::finish`]) needs none of this.
    pub fn close_due_rounds(&mut self, now: Millis) -> Vec<Flag> {
        let mut flags = Vec::new();
        for key in self.keys_with_due_rounds(now) {
            let mut findings = Vec::new();
            if let Some(due_at) = self.close_rounds(&key, now, false, &mut findings) {
                flags.extend(self.emit(findings, due_at, true));
            }
        }
        // A sweep is judged once nobody could still continue it: dated then, alike on every replica.
        for (due_at, findings) in self.close_stale_chains_dated(now) {
            flags.extend(self.emit(findings, due_at, true));
        }
        flags
    }

    /// Probe requests raised since the last call (see [`ProbeRequest`]).
    pub fn take_probe_requests(&mut self) -> Vec<ProbeRequest> {
        std::mem::take(&mut self.probes)
    }

    pub fn summary(&self, tenant: &str, device: &str) -> Option<DeviceSummary> {
        let d = self.ids.find_device(tenant, device)?;
        Some(self.summarize(d))
    }

    /// One summary per device, in order of first appearance.
    pub fn summaries(&self) -> impl Iterator<Item = DeviceSummary> + '_ {
        (0..self.devices.len()).map(|d| self.summarize(d as u32))
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Egress entries currently held (bounded by the window).
    pub fn egress_count(&self) -> usize {
        self.egress.len()
    }

    fn summarize(&self, d: u32) -> DeviceSummary {
        let dev = &self.devices[d as usize];
        DeviceSummary {
            device: dev.name.to_string(),
            worker: self.workers[dev.worker as usize].name.to_string(),
            tenant: self.ids.tenant_names[dev.tenant as usize].to_string(),
            risk: dev.flags.risk(),
            farm_suspected: dev.flags.farm_suspected(),
            farm_signals: dev.flags.farm_signals(),
            flags: dev.flags.kinds(),
        }
    }

    fn worker_index(&mut self, tenant: u32, name: &str) -> u32 {
        let (w, new) = self.ids.worker(tenant, name, self.workers.len());
        if new {
            self.workers.push(WorkerState {
                name: name.into(),
                tenant,
                declared_home: None,
                enrolled_home: None,
                home_stated: false,
                placed: None,
                hours: None,
                last_point: None,
            });
        }
        w
    }

    fn maybe_sweep(&mut self, at: Millis, findings: &mut Vec<Finding>) {
        let every = HOUR.max(Millis::from(self.cfg.shared_egress.window_hours) * HOUR / 8);
        if at.saturating_sub(self.last_sweep) < every {
            return;
        }
        self.last_sweep = at;
        self.sweep_egress(at, findings);
    }

    fn emit(&mut self, findings: Vec<Finding>, at: Millis, geo_known: bool) -> Vec<Flag> {
        let cooldown = Millis::from(self.cfg.flags.cooldown_hours) * HOUR;
        let geo_off = !geo_known && !self.enricher.enabled();
        let mut flags = Vec::new();
        for f in findings {
            let dev = &mut self.devices[f.device as usize];
            if !dev.wants(f.kind, f.severity, at, cooldown) {
                continue;
            }
            dev.emitted[f.kind.index()] = Some((f.severity, at));
            dev.flags.raise(f.kind, f.severity);
            let mut evidence = f.evidence;
            if geo_off && let Some(map) = evidence.as_object_mut() {
                map.insert(
                    "geo_signals".into(),
                    "off: no IP database is configured and the event carries no geo".into(),
                );
            }
            flags.push(Flag {
                kind: f.kind,
                severity: f.severity,
                score: f.kind.score(f.severity),
                tenant: self.ids.tenant_names[dev.tenant as usize].to_string(),
                worker: self.workers[dev.worker as usize].name.to_string(),
                device: dev.name.to_string(),
                at,
                evidence,
            });
        }
        flags
    }

    /// Whether a finding would survive [`Engine::emit`]'s de-duplication now. Signals that hold
    /// while a condition lasts (away from home, abroad, missing answers) ask first, so evidence
    /// the cooldown would drop is not built on every event. Emitting only raises what a device
    /// has had, so a finding refused here would be refused by `emit` too.
    pub(crate) fn would_emit(&self, d: u32, kind: FlagKind, severity: Severity, at: Millis) -> bool {
        let cooldown = Millis::from(self.cfg.flags.cooldown_hours) * HOUR;
        self.devices[d as usize].wants(kind, severity, at, cooldown)
    }

    /// `tenant/worker/device` for evidence.
    pub(crate) fn describe_device(&self, d: u32) -> serde_json::Value {
        let dev = &self.devices[d as usize];
        serde_json::json!({
            "tenant": &*self.ids.tenant_names[dev.tenant as usize],
            "worker": &*self.workers[dev.worker as usize].name,
            "device": &*dev.name,
        })
    }
}

pub(crate) fn home_point(home: &Home) -> HomePoint {
    HomePoint { lat: home.lat, lon: home.lon, country: home.country.as_deref().map(Into::into) }
}
