//! Views of access decisions and analyst reports.

use serde::Serialize;
use tether_proto::v1 as pb;

use crate::output::{Fields, Render, Table, rfc3339, time_cell};

use super::*;

// ---------------------------------------------------------------- access decisions

#[derive(Debug, Serialize)]
pub struct ReasonView {
    pub code: String,
    pub detail: String,
}

impl From<pb::Reason> for ReasonView {
    fn from(r: pb::Reason) -> Self {
        Self { code: deny_reason(r.code), detail: r.detail }
    }
}

fn reason_codes(reasons: &[ReasonView]) -> String {
    reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(",")
}

#[derive(Debug, Serialize)]
pub struct CheckAccessView {
    pub decision: String,
    pub reasons: Vec<ReasonView>,
    pub session_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub last_presence_at: Option<String>,
    /// Open flags at the decision; `denies: false` ones were reported, not enforced.
    pub open_flags: Vec<OpenFlagView>,
    /// Tier denials the tenant's monitor mode recorded without enforcing.
    pub would_deny_reasons: Vec<ReasonView>,
}

#[derive(Debug, Serialize)]
pub struct OpenFlagView {
    pub kind: String,
    pub severity: String,
    pub denies: bool,
}

impl From<pb::OpenFlag> for OpenFlagView {
    fn from(f: pb::OpenFlag) -> Self {
        Self { kind: f.kind, severity: flag_severity(f.severity), denies: f.denies }
    }
}

impl From<pb::CheckAccessResponse> for CheckAccessView {
    fn from(r: pb::CheckAccessResponse) -> Self {
        Self {
            decision: decision(r.decision),
            reasons: r.reasons.into_iter().map(Into::into).collect(),
            session_id: r.session_id,
            device_id: r.device_id,
            credential_id: r.credential_id,
            last_presence_at: rfc3339(r.last_presence_at_ms),
            open_flags: r.open_flags.into_iter().map(Into::into).collect(),
            would_deny_reasons: r.would_deny_reasons.into_iter().map(Into::into).collect(),
        }
    }
}

impl Render for CheckAccessView {
    fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.decision.to_ascii_uppercase());
        for reason in &self.reasons {
            out.push_str(&format!(
                "  - {}: {}\n",
                crate::output::clean(&reason.code),
                crate::output::clean(&reason.detail)
            ));
        }
        for reason in &self.would_deny_reasons {
            out.push_str(&format!(
                "  - would deny (monitor mode) {}: {}\n",
                crate::output::clean(&reason.code),
                crate::output::clean(&reason.detail)
            ));
        }
        let flags: Vec<String> = self
            .open_flags
            .iter()
            .map(|f| {
                let effect = if f.denies { "denies" } else { "reported" };
                crate::output::clean(&format!("{} ({}, {effect})", f.kind, f.severity))
            })
            .collect();
        out.push_str(
            &Fields::new()
                .add("session", &self.session_id)
                .add("device", &self.device_id)
                .add("credential", &self.credential_id)
                .add("last presence", time_cell(&self.last_presence_at))
                .add("open flags", if flags.is_empty() { "none".to_string() } else { flags.join(", ") })
                .render(),
        );
        out
    }
}

// ---------------------------------------------------------------- reports

#[derive(Debug, Serialize)]
pub struct PresenceEventView {
    pub id: String,
    pub outcome: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub challenge_id: String,
    pub at: Option<String>,
    pub source_ip: String,
    pub detail: String,
}

impl From<pb::PresenceEvent> for PresenceEventView {
    fn from(e: pb::PresenceEvent) -> Self {
        Self {
            id: e.id,
            outcome: presence_outcome(e.outcome),
            device_id: e.device_id,
            worker_external_id: e.worker_external_id,
            credential_id: e.credential_id,
            challenge_id: e.challenge_id,
            at: rfc3339(e.at_ms),
            source_ip: e.source_ip,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PresenceFailuresView {
    pub events: Vec<PresenceEventView>,
    pub next_page_token: Option<String>,
}

impl Render for PresenceFailuresView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["AT", "OUTCOME", "WORKER", "DEVICE", "CHALLENGE", "SOURCE IP", "DETAIL"]);
        for e in &self.events {
            table.row([
                time_cell(&e.at),
                e.outcome.clone(),
                e.worker_external_id.clone(),
                e.device_id.clone(),
                e.challenge_id.clone(),
                e.source_ip.clone(),
                e.detail.clone(),
            ]);
        }
        let mut out = table.render();
        more_hint(&mut out, &self.next_page_token);
        out
    }
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub worker_external_id: String,
    pub device_id: String,
    pub credential_id: String,
    pub source_ip: String,
    pub gateway_id: String,
    pub decision: String,
    pub reasons: Vec<ReasonView>,
    /// Tier denials monitor mode did not enforce: a would-deny session.
    pub would_deny_reasons: Vec<ReasonView>,
    pub at: Option<String>,
    /// Flags raised by the session or open on its device or worker at the time.
    pub flags: Vec<FlagAtTimeView>,
}

impl From<pb::Session> for SessionView {
    fn from(s: pb::Session) -> Self {
        Self {
            id: s.id,
            worker_external_id: s.worker_external_id,
            device_id: s.device_id,
            credential_id: s.credential_id,
            source_ip: s.source_ip,
            gateway_id: s.gateway_id,
            decision: decision(s.decision),
            reasons: s.reasons.into_iter().map(Into::into).collect(),
            would_deny_reasons: s.would_deny_reasons.into_iter().map(Into::into).collect(),
            at: rfc3339(s.at_ms),
            flags: s.flags.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionsView {
    pub sessions: Vec<SessionView>,
    pub next_page_token: Option<String>,
}

impl Render for SessionsView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&[
            "AT",
            "DECISION",
            "WORKER",
            "DEVICE",
            "SOURCE IP",
            "GATEWAY",
            "REASONS",
            "WOULD DENY",
            "SESSION",
        ]);
        for s in &self.sessions {
            table.row([
                time_cell(&s.at),
                s.decision.clone(),
                s.worker_external_id.clone(),
                s.device_id.clone(),
                s.source_ip.clone(),
                s.gateway_id.clone(),
                reason_codes(&s.reasons),
                reason_codes(&s.would_deny_reasons),
                s.id.clone(),
            ]);
        }
        let mut out = table.render();
        more_hint(&mut out, &self.next_page_token);
        out
    }
}

#[derive(Debug, Serialize)]
pub struct FlagView {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub status: String,
    pub device_id: String,
    pub worker_external_id: String,
    pub credential_id: String,
    pub session_id: String,
    pub raised_at: Option<String>,
    /// The parsed `evidence_json` (kept as a string if it is not JSON; null if empty).
    pub evidence: serde_json::Value,
    /// The latest review note, when and by whom (null when never reviewed).
    pub note: Option<String>,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

impl From<pb::Flag> for FlagView {
    fn from(f: pb::Flag) -> Self {
        let evidence = if f.evidence_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&f.evidence_json).unwrap_or(serde_json::Value::String(f.evidence_json))
        };
        Self {
            id: f.id,
            kind: f.kind,
            severity: flag_severity(f.severity),
            status: flag_status(f.status),
            device_id: f.device_id,
            worker_external_id: f.worker_external_id,
            credential_id: f.credential_id,
            session_id: f.session_id,
            raised_at: rfc3339(f.raised_at_ms),
            evidence,
            note: Some(f.note).filter(|n| !n.is_empty()),
            updated_at: rfc3339(f.updated_at_ms),
            updated_by: Some(f.updated_by).filter(|b| !b.is_empty()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FlagsView {
    pub flags: Vec<FlagView>,
    pub next_page_token: Option<String>,
}

impl Render for FlagView {
    fn to_text(&self) -> String {
        Fields::new()
            .add("flag", &self.id)
            .add("kind", &self.kind)
            .add("severity", &self.severity)
            .add("status", &self.status)
            .add("device", &self.device_id)
            .add("worker", &self.worker_external_id)
            .add("note", self.note.as_deref().unwrap_or(""))
            .add("updated by", self.updated_by.as_deref().unwrap_or(""))
            .add("updated", time_cell(&self.updated_at))
            .render()
    }
}

impl Render for FlagsView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["RAISED", "SEVERITY", "STATUS", "KIND", "WORKER", "DEVICE", "FLAG"]);
        for f in &self.flags {
            table.row([
                time_cell(&f.raised_at),
                f.severity.clone(),
                f.status.clone(),
                f.kind.clone(),
                f.worker_external_id.clone(),
                f.device_id.clone(),
                f.id.clone(),
            ]);
        }
        let mut out = table.render();
        more_hint(&mut out, &self.next_page_token);
        out
    }
}
