//! The risk engine inside tetherd: every enrollment, presence answer or miss,
//! and access check becomes an event; the flags it raises are stored (with
//! an audit entry) before the request returns, so they show in the analyst
//! report and in the gateway decision of that same request.
//!
//! The engine's windows live in this process's memory; on start they are
//! warmed from the last day of recorded presence and sessions. Several
//! replicas each see only their own traffic — sharing engine state across
//! replicas is part of the scale-out work.

use crate::app::App;
use crate::audit::{self, Actor};
use crate::error::ApiResult;
use crate::risk::event::{Enrollment, Outcome, Presence, Session};
use crate::risk::{Engine, Enricher, Event, EventBody, Flag, MmdbEnricher, NoEnricher, RiskConfig, Severity};
use crate::store::flags::FlagRecord;
use crate::store::{Store, StoreError, flags, presence as presence_store, sessions};
use crate::util::{canonical_ip, new_id, now_ms};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct LiveRisk {
    engine: Mutex<Engine>,
}

/// What happened, in the service's terms.
pub enum Happening {
    Enrolled { attested: bool, format: String },
    Answered { issued_at_ms: i64, sign_count: u32 },
    Missed { issued_at_ms: i64 },
    Session { gateway: String },
}

pub struct Observation<'a> {
    pub tenant_id: &'a str,
    pub worker: &'a str,
    pub device_id: &'a str,
    pub credential_id: &'a str,
    pub session_id: &'a str,
    /// The caller's address; empty when there was none (a missed challenge).
    pub ip: &'a str,
    pub at_ms: i64,
    pub what: Happening,
}

pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Review => "review",
        Severity::High => "high",
    }
}

/// Builds the engine from a configuration file (TOML or JSON; defaults
/// without one). IP databases named in it are read relative to its folder.
pub fn load_engine(config_path: Option<&Path>) -> Result<Engine, String> {
    let (config, base) = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the risk configuration {}: {e}", path.display()))?;
            let config = RiskConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            (config, path.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (RiskConfig::default(), PathBuf::new()),
    };
    let read = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|p| {
                let full = base.join(p);
                std::fs::read(&full).map_err(|e| format!("cannot read the IP database {}: {e}", full.display()))
            })
            .transpose()
    };
    let (city, asn) = (read(&config.geo.city_mmdb)?, read(&config.geo.asn_mmdb)?);
    let enricher: Box<dyn Enricher> = if city.is_none() && asn.is_none() {
        Box::new(NoEnricher)
    } else {
        Box::new(MmdbEnricher::from_bytes(city, asn)?)
    };
    Engine::with_enricher(config, enricher)
}

impl LiveRisk {
    pub fn new(engine: Engine) -> LiveRisk {
        LiveRisk { engine: Mutex::new(engine) }
    }

    pub fn geo_enabled(&self) -> bool {
        match self.engine.lock() {
            Ok(engine) => engine.geo_enabled(),
            Err(poisoned) => poisoned.into_inner().geo_enabled(),
        }
    }

    fn process(&self, event: &Event) -> Vec<Flag> {
        match self.engine.lock() {
            Ok(mut engine) => engine.process(event),
            // A panic elsewhere poisoned the lock; the engine's state is still usable.
            Err(poisoned) => poisoned.into_inner().process(event),
        }
    }

    /// Replays the last day of recorded activity so windows survive a restart.
    /// The flags this raises were stored when the events first happened.
    pub async fn warm_up(&self, store: &Store) -> Result<usize, StoreError> {
        let since = now_ms() - 24 * 3600 * 1000;
        let mut events: Vec<Event> = Vec::new();
        for e in presence_store::recent_events(store, since).await? {
            let what = match e.outcome.as_str() {
                "ok" => Happening::Answered { issued_at_ms: e.at_ms, sign_count: 0 },
                "missed" => Happening::Missed { issued_at_ms: e.at_ms },
                _ => continue,
            };
            events.extend(to_event(&Observation {
                tenant_id: &e.tenant_id,
                worker: &e.worker_external_id,
                device_id: &e.device_id,
                credential_id: &e.credential_id,
                session_id: "",
                ip: &e.source_ip,
                at_ms: e.at_ms,
                what,
            }));
        }
        for s in sessions::recent(store, since).await? {
            if s.decision != "allow" {
                continue;
            }
            events.extend(to_event(&Observation {
                tenant_id: &s.tenant_id,
                worker: &s.worker_external_id,
                device_id: &s.device_id,
                credential_id: &s.credential_id,
                session_id: &s.id,
                ip: &s.source_ip,
                at_ms: s.at_ms,
                what: Happening::Session { gateway: s.gateway_id.clone() },
            }));
        }
        events.sort_by_key(|e| e.at);
        for event in &events {
            self.process(event);
        }
        Ok(events.len())
    }
}

fn to_event(o: &Observation<'_>) -> Option<Event> {
    let ip = match o.what {
        Happening::Missed { .. } => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => canonical_ip(o.ip)?,
    };
    let body = match &o.what {
        Happening::Enrolled { attested, format } => {
            EventBody::Enrollment(Enrollment { attested: *attested, format: Some(format.clone()), home: None })
        }
        Happening::Answered { issued_at_ms, sign_count } => EventBody::Presence(Presence {
            outcome: Outcome::Ok,
            issued_at: Some(*issued_at_ms),
            answered_at: Some(o.at_ms),
            sign_count: (*sign_count > 0).then_some(u64::from(*sign_count)),
            tpm: None,
            posture: None,
        }),
        Happening::Missed { issued_at_ms } => EventBody::Presence(Presence {
            outcome: Outcome::Missed,
            issued_at: Some(*issued_at_ms),
            answered_at: None,
            sign_count: None,
            tpm: None,
            posture: None,
        }),
        Happening::Session { gateway } => EventBody::Session(Session { gateway: Some(gateway.clone()) }),
    };
    Some(Event {
        at: o.at_ms,
        tenant: o.tenant_id.to_string(),
        worker: o.worker.to_string(),
        device: o.device_id.to_string(),
        ip,
        geo: None,
        body,
    })
}

/// Feeds one happening to the engine and stores the flags it raises, with
/// their audit entries, in one transaction. Returns the stored flags.
pub async fn observe(app: &App, o: Observation<'_>) -> ApiResult<Vec<Flag>> {
    let Some(event) = to_event(&o) else { return Ok(Vec::new()) };
    let mut raised = app.risk.process(&event);
    if matches!(o.what, Happening::Enrolled { .. }) {
        // Enrollment records this flag itself, in its own transaction and
        // with the verifier's reason; the engine only needs to know.
        raised.retain(|f| f.kind != crate::risk::FlagKind::UnattestedHardware);
    }
    if raised.is_empty() {
        return Ok(raised);
    }
    let mut tx = app.store.begin().await?;
    for flag in &raised {
        // A cluster flag can name other members, even of other tenants:
        // each is stored with its own tenant, device and worker.
        let own = flag.tenant == o.tenant_id && flag.device == o.device_id;
        let record = FlagRecord {
            id: new_id("flg"),
            tenant_id: flag.tenant.clone(),
            kind: flag.kind.as_str().into(),
            severity: severity_name(flag.severity).into(),
            status: "open".into(),
            device_id: flag.device.clone(),
            worker_external_id: flag.worker.clone(),
            credential_id: if own { o.credential_id.to_string() } else { String::new() },
            session_id: if own { o.session_id.to_string() } else { String::new() },
            raised_at_ms: flag.at,
            evidence_json: flag.evidence.to_string(),
        };
        flags::insert(&mut tx, &record).await?;
        let details = serde_json::json!({
            "flag": record.id, "kind": record.kind, "severity": record.severity, "score": flag.score,
        });
        audit::append(&mut tx, &flag.tenant, &Actor::system(), "flag.raised", &flag.device, details).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    for flag in &raised {
        tracing::info!(
            tenant = %flag.tenant, device = %flag.device, kind = flag.kind.as_str(),
            severity = severity_name(flag.severity), "risk flag raised"
        );
    }
    Ok(raised)
}
