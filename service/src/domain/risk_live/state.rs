//! The live engine's state, shared by every task of this replica: the engine
//! behind one lock, how far into the shared log it has evaluated, the
//! administrators' declarations it applies, and how it probes. No request
//! context: the capabilities that feed it (crate::domain::risk_live) hold it.

use crate::store::inventory;
use crate::store::risk_events::{Position, ProbeRound, StoredEvent};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tether_risk::event::Home;
use tether_risk::{Engine, Event, EventBody, Flag, FlagKind, Millis, ProbeRequest, RiskConfig, WorkingHours};

const HOUR_MS: Millis = 3_600_000;

pub struct LiveRisk {
    shared: Mutex<Shared>,
}

impl LiveRisk {
    pub fn new(engine: Engine) -> LiveRisk {
        LiveRisk { shared: Mutex::new(Shared::new(engine)) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere poisoned the lock; the engine's state is still usable.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn geo_enabled(&self) -> bool {
        self.lock().engine.geo_enabled()
    }

    pub(super) fn process(&self, event: &Event) -> Vec<Flag> {
        self.lock().engine.process(event)
    }

    /// Probe requests the engine raised since the last call, and how to probe
    /// (`enabled` false when probes are disabled in the risk configuration).
    pub(crate) fn take_probes(&self) -> (Vec<ProbeRequest>, Cadence) {
        let mut shared = self.lock();
        let probes = shared.engine.take_probe_requests();
        let cadence = Cadence::of(shared.engine.config());
        (if cadence.enabled { probes } else { Vec::new() }, cadence)
    }

    /// Sets an administrator's declaration (home, working hours) for a worker.
    pub fn declare(&self, tenant_id: &str, worker: &inventory::Worker) {
        Declaration::of(worker).apply(&mut self.lock().engine, tenant_id, &worker.external_id);
    }
}

/// The engine and how far into the shared log it has evaluated.
pub struct Shared {
    pub(crate) engine: Engine,
    /// The last log position evaluated.
    pub(super) cursor: Position,
    /// This replica's own events being evaluated: their flags, once any
    /// task's catch-up evaluated them, for the request that recorded them.
    pub(super) pending: HashMap<i64, Option<Vec<Flag>>>,
    pub(super) last_prune: Millis,
}

impl Shared {
    pub fn new(engine: Engine) -> Shared {
        Shared { engine, cursor: Position::START, pending: HashMap::new(), last_prune: 0 }
    }

    /// How far back windows reach: the longest window or flag cooldown, at least a day.
    pub(crate) fn horizon_ms(&self) -> Millis {
        let c = self.engine.config();
        let hours = [
            c.shared_egress.window_hours,
            c.presence_burst.window_hours,
            c.presence_missed.window_hours,
            c.flags.cooldown_hours,
            24,
        ];
        Millis::from(hours.into_iter().max().unwrap_or(24)) * HOUR_MS
    }

    pub(super) fn cooldown_ms(&self) -> Millis {
        (Millis::from(self.engine.config().flags.cooldown_hours) * HOUR_MS).max(1)
    }

    /// Evaluates the rows after the cursor, in order; returns those that raised flags.
    pub(super) fn apply(&mut self, rows: Vec<StoredEvent>) -> Vec<(StoredEvent, Vec<Flag>)> {
        let mut raised = Vec::new();
        for row in rows {
            if row.position() <= self.cursor {
                continue; // another task of this replica got there first
            }
            self.cursor = row.position();
            let flags = self.evaluate(&row);
            if let Some(slot) = self.pending.get_mut(&row.seq) {
                *slot = Some(flags.clone());
            }
            if !flags.is_empty() {
                raised.push((row, flags));
            }
        }
        raised
    }

    fn evaluate(&mut self, row: &StoredEvent) -> Vec<Flag> {
        let event = match Event::from_stored_json(&row.event_json) {
            // The row's time is the one windows, warm-up and pruning go by.
            Ok(event) => Event { at: row.at_ms, ..event },
            Err(why) => {
                // Written by a tetherd; one that no longer parses is skipped (every replica skips it).
                tracing::warn!(seq = row.seq, %why, "skipping an unreadable risk event");
                return Vec::new();
            }
        };
        if !row.declared_json.is_empty() {
            match serde_json::from_str::<Declaration>(&row.declared_json) {
                Ok(d) => d.apply(&mut self.engine, &event.tenant, &event.worker),
                Err(e) => tracing::warn!(seq = row.seq, error = %e, "ignoring an unreadable worker declaration"),
            }
        }
        let engine = &mut self.engine;
        let mut flags = crate::telemetry::evaluate(crate::telemetry::RISK_EVALUATION, || engine.process(&event));
        if matches!(event.body, EventBody::Enrollment(_)) {
            // Enrollment records this flag itself, in its own transaction and
            // with the verifier's reason; the engine only needs to know.
            flags.retain(|f| f.kind != FlagKind::UnattestedHardware);
        }
        flags
    }
}

/// What an administrator declared for a worker, as carried by each event so
/// that every replica applies the same declaration before the same event.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Declaration {
    home: Option<Home>,
    working_hours: String,
    timezone: String,
    /// Not declared but recorded: where the worker's earliest active
    /// credential enrolled from, which stands in for an undeclared home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enrolled_from_ip: Option<String>,
    /// The tenant's registered office egresses as they were when the event
    /// happened; `None` leaves the engine's as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_offices: Option<Vec<String>>,
}

impl Declaration {
    pub fn of(worker: &inventory::Worker) -> Declaration {
        let d = &worker.declared;
        Declaration {
            home: d.home.map(|(lat, lon)| Home {
                lat,
                lon,
                country: Some(d.home_country.clone()).filter(|c| !c.is_empty()),
            }),
            working_hours: d.working_hours.clone(),
            timezone: d.working_timezone.clone(),
            enrolled_from_ip: None,
            tenant_offices: None,
        }
    }

    pub fn with_tenant_offices(mut self, offices: &[ipnet::IpNet]) -> Declaration {
        self.tenant_offices = Some(offices.iter().map(ToString::to_string).collect());
        self
    }

    pub fn with_enrollment_ip(mut self, ip: Option<String>) -> Declaration {
        self.enrolled_from_ip = ip;
        self
    }

    pub fn apply(&self, engine: &mut Engine, tenant_id: &str, worker: &str) {
        let hours = if self.working_hours.is_empty() {
            None
        } else {
            match WorkingHours::parse(&self.working_hours, &self.timezone) {
                Ok(h) => Some(h),
                Err((field, why)) => {
                    // Validated when declared; a stored value that no longer parses is ignored, loudly.
                    tracing::warn!(tenant = %tenant_id, %worker, %field, %why, "ignoring stored working hours");
                    None
                }
            }
        };
        engine.declare(tenant_id, worker, self.home.as_ref(), hours);
        if let Some(offices) = &self.tenant_offices {
            // Validated when registered; anything unreadable is dropped, loudly.
            let nets: Vec<ipnet::IpNet> = offices
                .iter()
                .filter_map(|text| {
                    let parsed = text.parse().ok();
                    if parsed.is_none() {
                        tracing::warn!(tenant = %tenant_id, office = %text, "ignoring unreadable office egress");
                    }
                    parsed
                })
                .collect();
            engine.register_offices(tenant_id, &nets);
        }
        if let Some(ip) = self.enrolled_from_ip.as_deref().and_then(crate::util::canonical_ip) {
            engine.learn_enrollment_home(tenant_id, worker, ip);
        }
    }
}

/// How a new cluster is probed (`[probes]` in the risk configuration).
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub enabled: bool,
    pub rounds: u32,
    pub interval_secs: u32,
    pub deadline_secs: u32,
}

impl Cadence {
    pub fn of(config: &RiskConfig) -> Cadence {
        Cadence {
            enabled: config.probes.enabled,
            rounds: config.probe_rounds(),
            interval_secs: config.probes.interval_secs,
            deadline_secs: config.probes.deadline_secs,
        }
    }

    /// The rounds of one probe request, the first due at `now`.
    pub(super) fn rounds_of(&self, request: &ProbeRequest, now: i64) -> Vec<ProbeRound> {
        let devices_json = serde_json::json!(request.devices).to_string();
        (0..self.rounds)
            .map(|n| ProbeRound {
                egress: request.egress.clone(),
                at_ms: request.at,
                round_no: i64::from(n),
                due_at_ms: now.saturating_add(i64::from(n) * i64::from(self.interval_secs) * 1000),
                deadline_secs: i64::from(self.deadline_secs),
                devices_json: devices_json.clone(),
            })
            .collect()
    }
}
