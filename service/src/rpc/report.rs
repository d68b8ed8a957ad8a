//! ReportService: what analysts review, newest first, with stable cursors.

use super::{page_size, time_cursor, time_range, time_token};
use crate::access::reason_from_name;
use crate::app::App;
use crate::audit::{self as audit_log, Actor};
use crate::auth::{Role, authorize};
use crate::error::{ApiError, ApiResult};
use crate::store::flags::StoredFlag;
use crate::store::presence::EventFilter;
use crate::store::{StoreError, audit, flags, presence, sessions};
use crate::util::now_ms;
use std::sync::Arc;
use tether_proto::v1::{self as pb, report_service_server::ReportService};
use tonic::{Request, Response, Status};

const READERS: &[Role] = &[Role::Analyst, Role::Admin];
const FAILURE_OUTCOMES: &str = ",missed,failed,replayed,late,clone_suspected,";

pub struct ReportApi {
    pub app: Arc<App>,
}

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

fn outcome_from_name(name: &str) -> pb::PresenceOutcome {
    pb::PresenceOutcome::from_str_name(&format!("PRESENCE_OUTCOME_{}", name.to_ascii_uppercase()))
        .unwrap_or(pb::PresenceOutcome::Unspecified)
}

fn filter(range: Option<&pb::TimeRange>, worker: &str, device: &str) -> ApiResult<EventFilter> {
    let (since_ms, until_ms) = time_range(range)?;
    Ok(EventFilter {
        since_ms,
        until_ms,
        worker_external_id: worker.trim().to_string(),
        device_id: device.trim().to_string(),
    })
}

fn failure_outcomes(requested: &[i32]) -> ApiResult<String> {
    if requested.is_empty() {
        return Ok(FAILURE_OUTCOMES.to_string());
    }
    let mut list = String::from(",");
    for value in requested {
        let outcome = pb::PresenceOutcome::try_from(*value)
            .ok()
            .filter(|o| !matches!(o, pb::PresenceOutcome::Unspecified | pb::PresenceOutcome::Ok))
            .ok_or_else(|| ApiError::invalid(format!("outcomes: {value} is not a failure outcome")))?;
        list.push_str(outcome_name(outcome));
        list.push(',');
    }
    Ok(list)
}

fn flag_to_proto(stored: StoredFlag) -> pb::Flag {
    let f = stored.flag;
    pb::Flag {
        id: f.id,
        kind: f.kind,
        severity: severity(&f.severity) as i32,
        status: status_from_name(&f.status) as i32,
        device_id: f.device_id,
        worker_external_id: f.worker_external_id,
        credential_id: f.credential_id,
        session_id: f.session_id,
        raised_at_ms: f.raised_at_ms,
        evidence_json: f.evidence_json,
        note: stored.note,
        updated_at_ms: stored.updated_at_ms.unwrap_or(0),
        updated_by: stored.updated_by,
    }
}

fn severity(name: &str) -> pb::FlagSeverity {
    match name {
        "info" => pb::FlagSeverity::Info,
        "review" => pb::FlagSeverity::Review,
        "high" => pb::FlagSeverity::High,
        _ => pb::FlagSeverity::Unspecified,
    }
}

fn status_from_name(name: &str) -> pb::FlagStatus {
    match name {
        "open" => pb::FlagStatus::Open,
        "acknowledged" => pb::FlagStatus::Acknowledged,
        "resolved" => pb::FlagStatus::Resolved,
        _ => pb::FlagStatus::Unspecified,
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn list_presence_failures(
        &self,
        request: Request<pb::ListPresenceFailuresRequest>,
    ) -> Result<Response<pb::ListPresenceFailuresResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let filter = filter(r.range.as_ref(), &r.worker_external_id, &r.device_id)?;
        let outcomes = failure_outcomes(&r.outcomes)?;
        let limit = page_size(r.page.as_ref());
        let cursor = time_cursor(r.page.as_ref())?;
        let list = presence::list_events(&self.app.store, &caller.tenant_id, &filter, &outcomes, &cursor, limit)
            .await
            .map_err(ApiError::from)?;
        let next = time_token(list.last().map(|e| (e.at_ms, e.id.as_str())), list.len(), limit);
        let events = list
            .into_iter()
            .map(|e| pb::PresenceEvent {
                id: e.id,
                outcome: outcome_from_name(&e.outcome) as i32,
                device_id: e.device_id,
                worker_external_id: e.worker_external_id,
                credential_id: e.credential_id,
                challenge_id: e.challenge_id,
                at_ms: e.at_ms,
                source_ip: e.source_ip,
                detail: e.detail,
            })
            .collect();
        Ok(Response::new(pb::ListPresenceFailuresResponse { events, next_page_token: next }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let filter = filter(r.range.as_ref(), &r.worker_external_id, &r.device_id)?;
        let decision = match pb::Decision::try_from(r.decision) {
            Ok(pb::Decision::Unspecified) => "",
            Ok(pb::Decision::Allow) => "allow",
            Ok(pb::Decision::Deny) => "deny",
            Err(_) => return Err(ApiError::invalid(format!("decision: {} is not a decision", r.decision)).into()),
        };
        let limit = page_size(r.page.as_ref());
        let cursor = time_cursor(r.page.as_ref())?;
        let list = sessions::list(&self.app.store, &caller.tenant_id, &filter, decision, &cursor, limit)
            .await
            .map_err(ApiError::from)?;
        let next = time_token(list.last().map(|s| (s.at_ms, s.id.as_str())), list.len(), limit);
        let sessions = list
            .into_iter()
            .map(|s| {
                let reasons: Vec<serde_json::Value> = serde_json::from_str(&s.reasons_json).unwrap_or_default();
                pb::Session {
                    id: s.id,
                    worker_external_id: s.worker_external_id,
                    device_id: s.device_id,
                    credential_id: s.credential_id,
                    source_ip: s.source_ip,
                    gateway_id: s.gateway_id,
                    decision: if s.decision == "allow" { pb::Decision::Allow } else { pb::Decision::Deny } as i32,
                    reasons: reasons
                        .iter()
                        .map(|v| pb::Reason {
                            code: reason_from_name(v["code"].as_str().unwrap_or_default()) as i32,
                            detail: v["detail"].as_str().unwrap_or_default().to_string(),
                        })
                        .collect(),
                    at_ms: s.at_ms,
                }
            })
            .collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions, next_page_token: next }))
    }

    async fn list_flags(
        &self,
        request: Request<pb::ListFlagsRequest>,
    ) -> Result<Response<pb::ListFlagsResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let filter = filter(r.range.as_ref(), &r.worker_external_id, &r.device_id)?;
        let status = match pb::FlagStatus::try_from(r.status) {
            Ok(pb::FlagStatus::Unspecified) => "",
            Ok(pb::FlagStatus::Open) => "open",
            Ok(pb::FlagStatus::Acknowledged) => "acknowledged",
            Ok(pb::FlagStatus::Resolved) => "resolved",
            Err(_) => return Err(ApiError::invalid(format!("status: {} is not a flag status", r.status)).into()),
        };
        let limit = page_size(r.page.as_ref());
        let cursor = time_cursor(r.page.as_ref())?;
        let list = flags::list(&self.app.store, &caller.tenant_id, &filter, status, &cursor, limit)
            .await
            .map_err(ApiError::from)?;
        let next = time_token(list.last().map(|f| (f.flag.raised_at_ms, f.flag.id.as_str())), list.len(), limit);
        let flags = list.into_iter().map(flag_to_proto).collect();
        Ok(Response::new(pb::ListFlagsResponse { flags, next_page_token: next }))
    }

    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        if r.after_seq < 0 {
            return Err(ApiError::invalid("after_seq must not be negative").into());
        }
        let limit = match r.page_size {
            0 => 500,
            n => i64::from(n.min(5000)),
        };
        // Read the head first: entries committed after it are simply on the next page.
        let (head_seq, head_hash) = audit::head(&self.app.store, &caller.tenant_id).await.map_err(ApiError::from)?;
        let entries = audit::list(&self.app.store, &caller.tenant_id, r.after_seq, limit)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|e| pb::AuditEntry {
                tenant_id: e.tenant_id,
                seq: e.seq,
                at_ms: e.at_ms,
                actor: e.actor,
                action: e.action,
                target: e.target,
                details_json: e.details_json,
                prev_hash: e.prev_hash,
                hash: e.hash,
            })
            .collect();
        Ok(Response::new(pb::ListAuditLogResponse { entries, head_seq, head_hash }))
    }

    async fn update_flag(&self, request: Request<pb::UpdateFlagRequest>) -> Result<Response<pb::Flag>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let flag_id = crate::error::required("flag_id", &r.flag_id)?;
        let note = r.note.trim();
        if note.is_empty() {
            return Err(
                ApiError::invalid("note is required: say why the flag is acknowledged, resolved or reopened").into()
            );
        }
        if note.chars().count() > 2000 {
            return Err(ApiError::invalid("note is longer than 2000 characters").into());
        }
        let (to, action) = match pb::FlagStatus::try_from(r.status) {
            Ok(pb::FlagStatus::Acknowledged) => ("acknowledged", "flag.acknowledged"),
            Ok(pb::FlagStatus::Resolved) => ("resolved", "flag.resolved"),
            Ok(pb::FlagStatus::Open) => ("open", "flag.reopened"),
            _ => return Err(ApiError::invalid("status must be ACKNOWLEDGED, RESOLVED or OPEN").into()),
        };
        let current = flags::get(&self.app.store, &caller.tenant_id, flag_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no flag {flag_id:?}")))?;
        let from = current.flag.status.clone();
        if from == to {
            return Err(ApiError::precondition(format!("the flag is already {to}")).into());
        }
        if from == "resolved" && to == "acknowledged" {
            return Err(ApiError::precondition("a resolved flag must be reopened before it is acknowledged").into());
        }
        let mut tx = self.app.store.begin().await.map_err(ApiError::from)?;
        let moved = flags::review(&mut tx, flag_id, &from, to, note, &caller.principal, now_ms())
            .await
            .map_err(ApiError::from)?;
        if !moved {
            return Err(ApiError::precondition("the flag changed meanwhile; reload it and try again").into());
        }
        let details = serde_json::json!({"kind": current.flag.kind, "from": from, "to": to, "note": note});
        audit_log::append(&mut tx, &caller.tenant_id, &Actor(caller.principal.clone()), action, flag_id, details)
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(StoreError::from).map_err(ApiError::from)?;
        let updated = flags::get(&self.app.store, &caller.tenant_id, flag_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("no such flag"))?;
        Ok(Response::new(flag_to_proto(updated)))
    }
}
