//! The risk engine inside tetherd: every enrollment, presence answer or miss,
//! and access check becomes an event; the flags it raises are stored (with
//! an audit entry) before the request returns, so they show in the analyst
//! report and in the gateway decision of that same request.
//!
//! Each event is appended to the log every replica evaluates
//! (crate::domain::risk_live::shared), so all replicas' engines hold the same windows; on
//! start an engine is warmed from the newest events of that log.

pub mod probes;
pub mod shared;
pub mod state;

use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::domain::risk_live::shared::Await;
use crate::domain::risk_live::state::Declaration;
pub use crate::domain::risk_live::state::LiveRisk;
use crate::store::risk_events::{self, Position, StoredEvent};
use crate::store::{
    Store, StoreError, Tx, inventory, posture as posture_store, presence as presence_store, sessions, tenants,
};
use crate::util::{canonical_ip, now_ms};
use std::net::{IpAddr, Ipv4Addr};
use tether_risk::event::{Enrollment, Outcome, Posture, Presence, Session};
use tether_risk::{Event, EventBody, Flag, Severity};

/// What happened, in the service's terms. An answer's `posture` is the report
/// its device's key signed with it, if any; a miss's `probe` says that the
/// challenge was one of a probe round (crate::domain::risk_live::probes).
pub enum Happening {
    /// `hardware`: a hash naming the TPM (its EK) or the authenticator's credential key.
    Enrolled {
        attested: bool,
        format: String,
        hardware: String,
    },
    Answered {
        issued_at_ms: i64,
        sign_count: u32,
        posture: Option<Posture>,
    },
    Missed {
        issued_at_ms: i64,
        probe: bool,
    },
    Session {
        gateway: String,
    },
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

impl LiveRisk {
    /// Warms the windows from the shared event log (crate::domain::risk_live::shared::warm_up);
    /// from the presence and session records when the log is still empty (the
    /// first start after upgrading to it). Returns how many events were replayed.
    pub async fn warm_up(&self, store: &Store) -> Result<usize, StoreError> {
        for (tenant_id, worker) in inventory::declared_workers(store).await? {
            self.declare(&tenant_id, &worker);
        }
        if risk_events::is_empty(store).await? {
            return self.warm_up_from_records(store).await;
        }
        let last = risk_events::wait_for_stable(store).await?;
        crate::domain::risk_live::shared::warm_up(self, store, last).await
    }

    /// Replays the last day of recorded activity so windows survive a restart.
    /// The flags this raises were stored when the events first happened.
    async fn warm_up_from_records(&self, store: &Store) -> Result<usize, StoreError> {
        let since = now_ms() - 24 * 3600 * 1000;
        let mut events: Vec<Event> = Vec::new();
        let mut postures = posture_store::recent(store, since).await?;
        for e in presence_store::recent_events(store, since).await? {
            // Stored reports were parsed strictly when received; one that no longer parses is skipped.
            let posture = postures
                .remove(&e.id)
                .and_then(|json| crate::domain::presence::posture::Report::parse(json.as_bytes()).ok().flatten())
                .map(|r| r.posture);
            let what = match e.outcome.as_str() {
                "ok" => Happening::Answered { issued_at_ms: e.at_ms, sign_count: 0, posture },
                "missed" => Happening::Missed { issued_at_ms: e.at_ms, probe: false },
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
        self.lock().engine.take_probe_requests();
        Ok(events.len())
    }
}

fn to_event(o: &Observation<'_>) -> Option<Event> {
    let ip = match o.what {
        Happening::Missed { .. } => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => canonical_ip(o.ip)?,
    };
    let body = match &o.what {
        Happening::Enrolled { attested, format, hardware } => EventBody::Enrollment(Enrollment {
            attested: *attested,
            format: Some(format.clone()),
            home: None,
            hardware: Some(hardware.clone()).filter(|h| !h.is_empty()),
        }),
        Happening::Answered { issued_at_ms, sign_count, posture } => EventBody::Presence(Presence {
            outcome: Outcome::Ok,
            issued_at: Some(*issued_at_ms),
            answered_at: Some(o.at_ms),
            sign_count: (*sign_count > 0).then_some(u64::from(*sign_count)),
            tpm: None,
            posture: posture.clone(),
            probe: false,
        }),
        Happening::Missed { issued_at_ms, probe } => EventBody::Presence(Presence {
            outcome: Outcome::Missed,
            issued_at: Some(*issued_at_ms),
            answered_at: None,
            sign_count: None,
            tpm: None,
            posture: None,
            probe: *probe,
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

/// Hands an administrator's declaration for a worker to this process's engine
/// (other replicas pick it up before their next event for the worker).
pub fn declare(app: &App, tenant_id: &str, worker: &inventory::Worker) {
    app.risk.declare(tenant_id, worker);
}

/// An observation as its row of the shared log, to append in the transaction
/// that records what happened: the record and its risk event then commit (or
/// vanish) together, with one commit instead of two.
pub struct PendingEvent {
    row: StoredEvent,
    wait: Await,
}

impl PendingEvent {
    /// The event's row, for a writer that appends it itself (crate::store::append_queue::record_answer).
    pub fn row(&self) -> &StoredEvent {
        &self.row
    }

    /// Appends the event in `tx`; hand the position to [`PendingEvent::evaluate`] after commit.
    pub async fn append(&self, tx: &mut Tx) -> Result<Position, StoreError> {
        risk_events::append(tx, &self.row).await
    }

    /// Evaluates the log through this event, appended at `position` and
    /// committed; the flags that raises are stored, with their audit entries,
    /// before this returns. Returns the flags (this event's, and any others
    /// the catch-up raised).
    pub async fn evaluate(mut self, app: &App, position: Position) -> ApiResult<Vec<Flag>> {
        (self.row.seq, self.row.txn) = (position.seq, position.txn);
        crate::domain::risk_live::shared::evaluate_own(app, &self.row, self.wait).await
    }
}

/// Rows the caller already read for this request, so that preparing its
/// event does not read them again (None: read them).
#[derive(Default, Clone, Copy)]
pub struct Known<'a> {
    pub worker: Option<&'a inventory::Worker>,
    pub tenant: Option<&'a tenants::Tenant>,
    /// The worker's first enrollment address (`inventory::first_enrollment_ip`),
    /// read with `worker`; Some(None) when the worker has no active credential.
    pub first_enrollment_ip: Option<Option<&'a str>>,
}

/// Turns one happening into its log row (None when it has no address the
/// engine can use). Reads the worker's declaration as stored now (another
/// replica may have changed it): carried with the event, every replica
/// applies the same one.
pub async fn prepare(app: &App, o: Observation<'_>) -> ApiResult<Option<PendingEvent>> {
    prepare_known(app, o, Known::default()).await
}

async fn prepare_known(app: &App, o: Observation<'_>, known: Known<'_>) -> ApiResult<Option<PendingEvent>> {
    let Some(event) = to_event(&o) else { return Ok(None) };
    let declared = match o.worker {
        "" => None,
        worker => {
            let read;
            let found = match known.worker {
                Some(w) => Some(w),
                None => {
                    read = inventory::get_worker(&app.store, o.tenant_id, worker).await?;
                    read.as_ref()
                }
            };
            match found {
                Some(w) => {
                    let enrolled_from = match known.first_enrollment_ip {
                        Some(ip) => ip.map(str::to_string),
                        None => inventory::first_enrollment_ip(&app.store, o.tenant_id, worker).await?,
                    };
                    let offices = match known.tenant {
                        Some(t) => t.policy.office_egress.clone(),
                        None => tenants::get(&app.store, o.tenant_id)
                            .await?
                            .map(|t| t.policy.office_egress)
                            .unwrap_or_default(),
                    };
                    let declared = Declaration::of(w).with_enrollment_ip(enrolled_from);
                    Some(declared.with_tenant_offices(&offices))
                }
                None => None,
            }
        }
    };
    let row = StoredEvent {
        seq: 0,
        txn: 0,
        tenant_id: o.tenant_id.to_string(),
        device_id: o.device_id.to_string(),
        credential_id: o.credential_id.to_string(),
        session_id: o.session_id.to_string(),
        at_ms: o.at_ms,
        event_json: event.to_json().to_string(),
        declared_json: declared.map(|d| serde_json::json!(d).to_string()).unwrap_or_default(),
    };
    // Only an access decision depends on what its own event raises; the others report it.
    let wait = match o.what {
        Happening::Session { .. } => Await::Decision,
        _ => Await::Record,
    };
    Ok(Some(PendingEvent { row, wait }))
}

/// Records one happening in the shared event log in a transaction of its own
/// and evaluates the log through it (see [`PendingEvent::evaluate`]).
pub async fn observe(app: &App, o: Observation<'_>) -> ApiResult<Vec<Flag>> {
    observe_known(app, o, Known::default()).await
}

/// As [`observe`], with rows the caller already read for this request.
pub async fn observe_known(app: &App, o: Observation<'_>, known: Known<'_>) -> ApiResult<Vec<Flag>> {
    let Some(pending) = prepare_known(app, o, known).await? else { return Ok(Vec::new()) };
    // Appended with the other requests' events of the moment, in one transaction.
    let position = crate::store::append_queue::append_risk_event(&app.store, pending.row.clone()).await?;
    pending.evaluate(app, position).await
}
