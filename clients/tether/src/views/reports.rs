//! Views of the security-team reports: a device timeline and a period
//! summary, in the same JSON conventions as every other view (RFC 3339
//! times without `_ms`, lowercase enum names).

use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Fields, Render, Table, rfc3339, time_cell};

use super::*;

#[derive(Debug, Serialize)]
pub struct FlagAtTimeView {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub status: String,
    pub raised_at: Option<String>,
    pub attached: bool,
}

impl From<pb::FlagAtTime> for FlagAtTimeView {
    fn from(f: pb::FlagAtTime) -> Self {
        Self {
            id: f.id,
            kind: f.kind,
            severity: flag_severity(f.severity),
            status: flag_status(f.status),
            raised_at: rfc3339(f.raised_at_ms),
            attached: f.attached,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GeoView {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_km: Option<f64>,
    pub country: Option<String>,
}

impl From<pb::GeoPoint> for GeoView {
    fn from(g: pb::GeoPoint) -> Self {
        Self {
            lat: g.lat,
            lon: g.lon,
            accuracy_km: Some(g.accuracy_km).filter(|a| *a > 0.0),
            country: Some(g.country).filter(|c| !c.is_empty()),
        }
    }
}

impl GeoView {
    pub fn cell(geo: &Option<GeoView>) -> String {
        match geo {
            None => String::new(),
            Some(g) => format!("{:.2},{:.2} {}", g.lat, g.lon, g.country.as_deref().unwrap_or("")).trim().to_string(),
        }
    }
}

/// One timeline entry: common fields plus `type` and the detail's own fields.
#[derive(Debug, Serialize)]
pub struct TimelineEntryView {
    pub id: String,
    pub at: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub source_ip: String,
    pub geo: Option<GeoView>,
    /// A one-line description, as the table shows it.
    pub summary: String,
    pub detail: serde_json::Value,
}

fn detail_of(detail: Option<pb::timeline_entry::Detail>) -> (String, String, serde_json::Value) {
    use pb::timeline_entry::Detail;
    match detail {
        None => ("unknown".into(), String::new(), serde_json::Value::Null),
        Some(Detail::Device(d)) => {
            let text = [d.change.as_str(), d.credential_id.as_str(), d.detail.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            (
                d.change.clone(),
                text,
                serde_json::json!({"change": d.change, "credential_id": d.credential_id, "detail": d.detail}),
            )
        }
        Some(Detail::Enrollment(e)) => {
            let mut text = format!(
                "{} {} {} anchor={} aaguid={}",
                e.format,
                if e.attested { "attested" } else { "UNATTESTED" },
                e.attestation_type,
                if e.trust_anchor.is_empty() { "-" } else { &e.trust_anchor },
                e.aaguid
            );
            if let Some(t) = &e.tpm {
                text.push_str(&format!(" ek={} {} fw {}", t.ek_manufacturer, t.ek_model, t.ek_firmware));
            }
            let tpm = e.tpm.as_ref().map(|t| {
                serde_json::json!({"ek_manufacturer": t.ek_manufacturer, "ek_model": t.ek_model,
                                   "ek_firmware": t.ek_firmware, "ek_pin": t.ek_pin})
            });
            let value = serde_json::json!({
                "credential_id": e.credential_id, "kind": e.kind, "format": e.format,
                "attestation_type": e.attestation_type, "attested": e.attested,
                "attestation_reason": e.attestation_reason, "trust_anchor": e.trust_anchor,
                "aaguid": e.aaguid, "tpm": tpm,
            });
            ("enrollment".into(), text, value)
        }
        Some(Detail::Presence(p)) => {
            let view = PresenceEventView::from(p);
            let text = format!("{} {}", view.outcome, view.detail).trim().to_string();
            ("presence".into(), text, value(&view))
        }
        Some(Detail::Session(s)) => {
            let view = SessionView::from(s);
            let reasons: Vec<&str> = view.reasons.iter().map(|r| r.code.as_str()).collect();
            let text = format!("{} via {} {}", view.decision, view.gateway_id, reasons.join(",")).trim().to_string();
            ("session".into(), text, value(&view))
        }
        Some(Detail::Flag(f)) => {
            let view = FlagView::from(f);
            let text = format!("{} {} ({})", view.severity, view.kind, view.status);
            ("flag".into(), text, value(&view))
        }
        Some(Detail::Review(r)) => {
            let text =
                format!("{} {}: {} -> {} by {}: {}", r.action, r.flag_id, r.from_status, r.to_status, r.actor, r.note);
            let value = serde_json::json!({
                "flag_id": r.flag_id, "flag_kind": r.flag_kind, "action": r.action, "from": r.from_status,
                "to": r.to_status, "note": r.note, "actor": r.actor, "audit_seq": r.audit_seq,
            });
            ("review".into(), text, value)
        }
    }
}

fn value<T: Serialize>(view: &T) -> serde_json::Value {
    serde_json::to_value(view).unwrap_or(serde_json::Value::Null)
}

impl From<pb::TimelineEntry> for TimelineEntryView {
    fn from(e: pb::TimelineEntry) -> Self {
        let (kind, summary, detail) = detail_of(e.detail);
        Self {
            id: e.id,
            at: rfc3339(e.at_ms),
            kind,
            source_ip: e.source_ip,
            geo: e.geo.map(Into::into),
            summary,
            detail,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LocationView {
    pub source_ip: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub events: i64,
    pub geo: Option<GeoView>,
}

#[derive(Debug, Serialize)]
pub struct TimelineDeviceView {
    pub id: String,
    pub serial_number: String,
    pub model: String,
    pub asset_tag: String,
    pub worker_external_id: String,
    pub registered_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TimelineView {
    pub device: Option<TimelineDeviceView>,
    pub entries: Vec<TimelineEntryView>,
    pub locations: Vec<LocationView>,
    pub next_page_token: Option<String>,
}

impl TimelineView {
    /// The first page's device and locations, with every page's entries.
    pub fn new(first: pb::GetDeviceTimelineResponse) -> Self {
        Self {
            device: first.device.map(|d| TimelineDeviceView {
                id: d.id,
                serial_number: d.serial_number,
                model: d.model,
                asset_tag: d.asset_tag,
                worker_external_id: d.worker_external_id,
                registered_at: rfc3339(d.registered_at_ms),
                revoked_at: rfc3339(d.revoked_at_ms),
            }),
            entries: first.entries.into_iter().map(Into::into).collect(),
            locations: first
                .locations
                .into_iter()
                .map(|l| LocationView {
                    source_ip: l.source_ip,
                    first_seen: rfc3339(l.first_seen_ms),
                    last_seen: rfc3339(l.last_seen_ms),
                    events: l.events,
                    geo: l.geo.map(Into::into),
                })
                .collect(),
            next_page_token: page_token(first.next_page_token),
        }
    }
}

impl Render for TimelineView {
    fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.device {
            out.push_str(
                &Fields::new()
                    .add("device", &d.id)
                    .add("serial", &d.serial_number)
                    .add("model", &d.model)
                    .add("worker", &d.worker_external_id)
                    .add("registered", time_cell(&d.registered_at))
                    .add("revoked", time_cell(&d.revoked_at))
                    .render(),
            );
            out.push('\n');
        }
        let mut table = Table::new(&["AT", "TYPE", "SOURCE IP", "GEO", "WHAT"]);
        for e in &self.entries {
            table.row([
                time_cell(&e.at),
                e.kind.clone(),
                e.source_ip.clone(),
                GeoView::cell(&e.geo),
                e.summary.clone(),
            ]);
        }
        out.push_str(&table.render());
        more_hint(&mut out, &self.next_page_token);
        if !self.locations.is_empty() {
            let mut table = Table::new(&["SOURCE IP", "FIRST SEEN", "LAST SEEN", "EVENTS", "GEO"]);
            for l in &self.locations {
                table.row([
                    l.source_ip.clone(),
                    time_cell(&l.first_seen),
                    time_cell(&l.last_seen),
                    l.events.to_string(),
                    GeoView::cell(&l.geo),
                ]);
            }
            out.push_str("\nlocations:\n");
            out.push_str(&table.render());
        }
        out
    }
}

#[derive(Debug, Serialize)]
pub struct FlagCountView {
    pub kind: String,
    pub severity: String,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub egress: String,
    pub devices: i64,
    pub workers: i64,
    pub tenants: i64,
    pub highest_severity: String,
    pub last_seen: Option<String>,
    /// Only your tenant's devices: `device_id` and `worker_external_id`.
    pub own_devices: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct DeviceFailuresView {
    pub device_id: String,
    pub worker_external_id: String,
    pub failures: i64,
    /// Outcome name to count.
    pub by_outcome: serde_json::Map<String, serde_json::Value>,
    pub last_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SummaryView {
    pub since: Option<String>,
    pub until: Option<String>,
    pub flag_counts: Vec<FlagCountView>,
    pub clusters: Vec<ClusterView>,
    pub repeated_failures: Vec<DeviceFailuresView>,
}

impl From<pb::GetSummaryResponse> for SummaryView {
    fn from(s: pb::GetSummaryResponse) -> Self {
        let range = s.range.unwrap_or_default();
        Self {
            since: rfc3339(range.since_ms),
            until: rfc3339(range.until_ms),
            flag_counts: s
                .flag_counts
                .into_iter()
                .map(|c| FlagCountView { kind: c.kind, severity: flag_severity(c.severity), count: c.count })
                .collect(),
            clusters: s
                .clusters
                .into_iter()
                .map(|c| ClusterView {
                    egress: c.egress,
                    devices: c.devices,
                    workers: c.workers,
                    tenants: c.tenants,
                    highest_severity: flag_severity(c.highest_severity),
                    last_seen: rfc3339(c.last_seen_ms),
                    own_devices: c
                        .own_devices
                        .into_iter()
                        .map(|m| serde_json::json!({"device_id": m.device_id, "worker_external_id": m.worker_external_id}))
                        .collect(),
                })
                .collect(),
            repeated_failures: s
                .repeated_failures
                .into_iter()
                .map(|d| DeviceFailuresView {
                    device_id: d.device_id,
                    worker_external_id: d.worker_external_id,
                    failures: d.failures,
                    by_outcome: d.by_outcome.into_iter().map(|o| (presence_outcome(o.outcome), o.count.into())).collect(),
                    last_at: rfc3339(d.last_at_ms),
                })
                .collect(),
        }
    }
}

impl ClusterView {
    pub fn own_cell(&self) -> String {
        let names: Vec<String> = self
            .own_devices
            .iter()
            .map(|m| {
                format!("{}/{}", m["worker_external_id"].as_str().unwrap_or(""), m["device_id"].as_str().unwrap_or(""))
            })
            .collect();
        names.join(" ")
    }
}

impl DeviceFailuresView {
    pub fn outcomes_cell(&self) -> String {
        let parts: Vec<String> = self.by_outcome.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.join(" ")
    }
}

impl Render for SummaryView {
    fn to_text(&self) -> String {
        let mut out = format!("period: {} to {}\n\nflags:\n", time_cell(&self.since), time_cell(&self.until));
        let mut table = Table::new(&["KIND", "SEVERITY", "COUNT"]);
        for c in &self.flag_counts {
            table.row([c.kind.clone(), c.severity.clone(), c.count.to_string()]);
        }
        out.push_str(&table.render());
        out.push_str("\nshared egress clusters:\n");
        let mut table =
            Table::new(&["EGRESS", "DEVICES", "WORKERS", "TENANTS", "SEVERITY", "LAST SEEN", "YOUR DEVICES"]);
        for c in &self.clusters {
            table.row([
                c.egress.clone(),
                c.devices.to_string(),
                c.workers.to_string(),
                c.tenants.to_string(),
                c.highest_severity.clone(),
                time_cell(&c.last_seen),
                c.own_cell(),
            ]);
        }
        out.push_str(&table.render());
        out.push_str("\ndevices with repeated presence failures:\n");
        let mut table = Table::new(&["DEVICE", "WORKER", "FAILURES", "OUTCOMES", "LAST"]);
        for d in &self.repeated_failures {
            table.row([
                d.device_id.clone(),
                d.worker_external_id.clone(),
                d.failures.to_string(),
                d.outcomes_cell(),
                time_cell(&d.last_at),
            ]);
        }
        out.push_str(&table.render());
        out
    }
}
