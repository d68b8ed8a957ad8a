//! Domain report structs to `tether.v1` messages, and proto filters to
//! typed ones (each refusal names its field).

use crate::domain::access::reason_from_name;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::reports::{self, FailureOutcome, FlagStatus, Severity, TimelineDetail};
use crate::store::credentials::Tier;
use tether_proto::v1 as pb;

pub fn outcome_name(outcome: pb::PresenceOutcome) -> &'static str {
    match outcome {
        pb::PresenceOutcome::Unspecified => "unspecified",
        pb::PresenceOutcome::Ok => "ok",
        pb::PresenceOutcome::Missed => "missed",
        pb::PresenceOutcome::Failed => "failed",
        pb::PresenceOutcome::Replayed => "replayed",
        pb::PresenceOutcome::Late => "late",
        pb::PresenceOutcome::CloneSuspected => "clone_suspected",
    }
}

pub fn outcome(name: &str) -> pb::PresenceOutcome {
    pb::PresenceOutcome::from_str_name(&format!("PRESENCE_OUTCOME_{}", name.to_ascii_uppercase()))
        .unwrap_or(pb::PresenceOutcome::Unspecified)
}

pub fn severity(name: &str) -> pb::FlagSeverity {
    match name {
        "info" => pb::FlagSeverity::Info,
        "review" => pb::FlagSeverity::Review,
        "high" => pb::FlagSeverity::High,
        _ => pb::FlagSeverity::Unspecified,
    }
}

pub fn status(name: &str) -> pb::FlagStatus {
    match name {
        "open" => pb::FlagStatus::Open,
        "acknowledged" => pb::FlagStatus::Acknowledged,
        "resolved" => pb::FlagStatus::Resolved,
        _ => pb::FlagStatus::Unspecified,
    }
}

pub fn severity_filter(field: &str, value: i32) -> ApiResult<Severity> {
    match pb::FlagSeverity::try_from(value) {
        Ok(pb::FlagSeverity::Info) => Ok(Severity::Info),
        Ok(pb::FlagSeverity::Review) => Ok(Severity::Review),
        Ok(pb::FlagSeverity::High) => Ok(Severity::High),
        _ => Err(ApiError::invalid(format!("{field}: {value} is not a flag severity (INFO, REVIEW, HIGH)"))),
    }
}

pub fn status_filter(field: &str, value: i32) -> ApiResult<FlagStatus> {
    match pb::FlagStatus::try_from(value) {
        Ok(pb::FlagStatus::Open) => Ok(FlagStatus::Open),
        Ok(pb::FlagStatus::Acknowledged) => Ok(FlagStatus::Acknowledged),
        Ok(pb::FlagStatus::Resolved) => Ok(FlagStatus::Resolved),
        _ => Err(ApiError::invalid(format!("{field}: {value} is not a flag status (OPEN, ACKNOWLEDGED, RESOLVED)"))),
    }
}

pub fn outcome_filter(field: &str, value: i32) -> ApiResult<FailureOutcome> {
    pb::PresenceOutcome::try_from(value)
        .ok()
        .and_then(|o| FailureOutcome::ALL.iter().copied().find(|f| f.as_str() == outcome_name(o)))
        .ok_or_else(|| ApiError::invalid(format!("{field}: {value} is not a failure outcome")))
}

pub fn window(range: Option<&pb::TimeRange>) -> ApiResult<reports::TimeWindow> {
    let (since, until) = range.map(|r| (r.since_ms, r.until_ms)).unwrap_or((0, 0));
    reports::TimeWindow::new(since, until)
}

pub fn page(page: Option<&pb::Page>) -> ApiResult<reports::PageRequest> {
    match page {
        Some(p) => reports::PageRequest::parse(p.page_size, &p.page_token),
        None => reports::PageRequest::parse(0, ""),
    }
}

pub fn range(w: &reports::TimeWindow) -> pb::TimeRange {
    pb::TimeRange { since_ms: w.since_ms, until_ms: w.until_ms }
}

fn evidence_json(evidence: &serde_json::Value) -> String {
    match evidence {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub fn flag(f: reports::FlagItem) -> pb::Flag {
    pb::Flag {
        id: f.id,
        kind: f.kind,
        severity: severity(&f.severity) as i32,
        status: status(&f.status) as i32,
        device_id: f.device_id,
        worker_external_id: f.worker_external_id,
        credential_id: f.credential_id,
        session_id: f.session_id,
        raised_at_ms: f.raised_at_ms,
        evidence_json: evidence_json(&f.evidence),
        note: f.note,
        updated_at_ms: f.updated_at_ms,
        updated_by: f.updated_by,
    }
}

pub fn presence(e: reports::FailureItem) -> pb::PresenceEvent {
    pb::PresenceEvent {
        id: e.id,
        outcome: outcome(&e.outcome) as i32,
        device_id: e.device_id,
        worker_external_id: e.worker_external_id,
        credential_id: e.credential_id,
        challenge_id: e.challenge_id,
        at_ms: e.at_ms,
        source_ip: e.source_ip,
        detail: e.detail,
    }
}

fn reasons(list: Vec<reports::SessionReason>) -> Vec<pb::Reason> {
    list.into_iter().map(|r| pb::Reason { code: reason_from_name(&r.code) as i32, detail: r.detail }).collect()
}

pub fn session(s: reports::SessionItem) -> pb::Session {
    pb::Session {
        id: s.id,
        worker_external_id: s.worker_external_id,
        device_id: s.device_id,
        credential_id: s.credential_id,
        source_ip: s.source_ip,
        gateway_id: s.gateway_id,
        decision: if s.decision == "allow" { pb::Decision::Allow } else { pb::Decision::Deny } as i32,
        reasons: reasons(s.reasons),
        would_deny_reasons: reasons(s.would_deny),
        at_ms: s.at_ms,
        flags: s
            .flags
            .into_iter()
            .map(|f| pb::FlagAtTime {
                id: f.id,
                kind: f.kind,
                severity: severity(&f.severity) as i32,
                status: status(&f.status) as i32,
                raised_at_ms: f.raised_at_ms,
                attached: f.attached,
            })
            .collect(),
    }
}

fn geo(g: reports::GeoPoint) -> pb::GeoPoint {
    pb::GeoPoint {
        lat: g.lat,
        lon: g.lon,
        accuracy_km: g.accuracy_km.unwrap_or(0.0),
        country: g.country.unwrap_or_default(),
    }
}

fn change(change: &str, credential_id: String, detail: String) -> pb::timeline_entry::Detail {
    pb::timeline_entry::Detail::Device(pb::DeviceChange { change: change.into(), credential_id, detail })
}

pub fn timeline(t: reports::Timeline) -> pb::GetDeviceTimelineResponse {
    use pb::timeline_entry::Detail;
    let entries = t
        .entries
        .into_iter()
        .map(|e| {
            let detail = match e.detail {
                TimelineDetail::Registered { serial_number, model } => {
                    change("registered", String::new(), format!("{model} serial {serial_number}"))
                }
                TimelineDetail::Enrolled(i) => Detail::Enrollment(pb::EnrollmentInfo {
                    credential_id: i.credential_id,
                    kind: i.kind,
                    format: i.format,
                    attestation_type: i.attestation_type,
                    attested: i.attested,
                    tier: match Tier::parse(&i.tier) {
                        Some(tier) => crate::transport::rpc::admin::tier_to_proto(tier),
                        None => pb::AttestationTier::Unspecified,
                    } as i32,
                    attestation_reason: i.attestation_reason,
                    trust_anchor: i.trust_anchor,
                    aaguid: i.aaguid,
                    tpm: i.tpm.map(|t| pb::TpmInfo {
                        ek_manufacturer: t.ek_manufacturer,
                        ek_model: t.ek_model,
                        ek_firmware: t.ek_firmware,
                        ek_pin: t.ek_pin,
                    }),
                }),
                TimelineDetail::CredentialRevoked { credential_id, reason } => {
                    change("credential_revoked", credential_id, reason)
                }
                TimelineDetail::DeviceRevoked { reason } => change("device_revoked", String::new(), reason),
                TimelineDetail::Presence(p) => Detail::Presence(presence(p)),
                TimelineDetail::Session(s) => Detail::Session(session(s)),
                TimelineDetail::Flag(f) => Detail::Flag(flag(f)),
                TimelineDetail::FlagReview { flag_id, flag_kind, action, from, to, note, actor, audit_seq } => {
                    Detail::Review(pb::FlagReview {
                        flag_id,
                        flag_kind,
                        action,
                        from_status: from,
                        to_status: to,
                        note,
                        actor,
                        audit_seq,
                    })
                }
            };
            pb::TimelineEntry {
                id: e.id,
                at_ms: e.at_ms,
                source_ip: e.source_ip,
                geo: e.geo.map(geo),
                detail: Some(detail),
            }
        })
        .collect();
    let d = t.device;
    pb::GetDeviceTimelineResponse {
        device: Some(pb::TimelineDevice {
            id: d.id,
            serial_number: d.serial_number,
            model: d.model,
            asset_tag: d.asset_tag,
            worker_external_id: d.worker_external_id,
            registered_at_ms: d.registered_at_ms,
            revoked_at_ms: d.revoked_at_ms,
        }),
        entries,
        next_page_token: t.next_page_token,
        locations: t
            .locations
            .into_iter()
            .map(|l| pb::Location {
                source_ip: l.source_ip,
                first_seen_ms: l.first_seen_ms,
                last_seen_ms: l.last_seen_ms,
                events: l.events,
                geo: l.geo.map(geo),
            })
            .collect(),
    }
}

pub fn summary(s: reports::Summary) -> pb::GetSummaryResponse {
    pb::GetSummaryResponse {
        range: Some(range(&s.window)),
        flag_counts: s
            .flag_counts
            .into_iter()
            .map(|c| pb::FlagCount { kind: c.kind, severity: severity(&c.severity) as i32, count: c.count })
            .collect(),
        clusters: s
            .clusters
            .into_iter()
            .map(|c| pb::EgressCluster {
                egress: c.egress,
                devices: c.devices,
                workers: c.workers,
                tenants: c.tenants,
                highest_severity: severity(&c.highest_severity) as i32,
                last_seen_ms: c.last_seen_ms,
                own_devices: c
                    .own_devices
                    .into_iter()
                    .map(|m| pb::ClusterMember { device_id: m.device_id, worker_external_id: m.worker_external_id })
                    .collect(),
            })
            .collect(),
        repeated_failures: s
            .repeated_failures
            .into_iter()
            .map(|d| pb::DeviceFailures {
                device_id: d.device_id,
                worker_external_id: d.worker_external_id,
                failures: d.failures,
                by_outcome: d
                    .by_outcome
                    .into_iter()
                    .map(|o| pb::OutcomeCount { outcome: outcome(&o.outcome) as i32, count: o.count })
                    .collect(),
                last_at_ms: d.last_at_ms,
            })
            .collect(),
    }
}
