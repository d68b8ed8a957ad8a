//! ReportService: the gRPC face of `crate::domain::reports`. Authenticates the
//! caller, turns proto filters into typed ones and domain results into
//! messages; the queries themselves live in `crate::domain::reports`.

mod convert;

use crate::domain::app::App;
use crate::domain::error::ApiError;
use crate::domain::flags::review::{self, Review};
use crate::domain::reports::{self, FailureFilter, FlagFilter, SessionDecision, SessionFilter, SummaryRequest};
use crate::domain::tenancy::auth::Role;
use crate::store::audit;
use crate::store::flags::StoredFlag;
use crate::transport::rpc::authorize;
use std::sync::Arc;
use tether_proto::v1::{self as pb, report_service_server::ReportService};
use tonic::{Request, Response, Status};

pub use convert::outcome_name;

const READERS: &[Role] = &[Role::Analyst, Role::Admin];

pub struct ReportApi {
    pub app: Arc<App>,
}

/// A flag as UpdateFlag returns it: evidence redacted like every listing.
fn stored_flag(stored: StoredFlag, tenant_id: &str) -> pb::Flag {
    let f = stored.flag;
    let evidence = reports::redact_evidence(&serde_json::from_str(&f.evidence_json).unwrap_or_default(), tenant_id);
    pb::Flag {
        id: f.id,
        kind: f.kind,
        severity: convert::severity(&f.severity) as i32,
        status: convert::status(&f.status) as i32,
        device_id: f.device_id,
        worker_external_id: f.worker_external_id,
        credential_id: f.credential_id,
        session_id: f.session_id,
        raised_at_ms: f.raised_at_ms,
        evidence_json: if evidence.is_null() { f.evidence_json } else { evidence.to_string() },
        note: stored.note,
        updated_at_ms: stored.updated_at_ms.unwrap_or(0),
        updated_by: stored.updated_by,
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
        let filter = FailureFilter {
            window: convert::window(r.range.as_ref())?,
            outcomes: r.outcomes.iter().map(|o| convert::outcome_filter("outcomes", *o)).collect::<Result<_, _>>()?,
            worker_external_id: r.worker_external_id.clone(),
            device_id: r.device_id.clone(),
        };
        let page = convert::page(r.page.as_ref())?;
        let list = reports::list_failures(&self.app.store, &caller.tenant_id, &filter, &page).await?;
        let events = list.items.into_iter().map(convert::presence).collect();
        Ok(Response::new(pb::ListPresenceFailuresResponse { events, next_page_token: list.next_page_token }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let decision = match pb::Decision::try_from(r.decision) {
            Ok(pb::Decision::Unspecified) => None,
            Ok(pb::Decision::Allow) => Some(SessionDecision::Allow),
            Ok(pb::Decision::Deny) => Some(SessionDecision::Deny),
            Err(_) => return Err(ApiError::invalid(format!("decision: {} is not a decision", r.decision)).into()),
        };
        let filter = SessionFilter {
            window: convert::window(r.range.as_ref())?,
            decision,
            worker_external_id: r.worker_external_id.clone(),
            device_id: r.device_id.clone(),
            would_deny_only: r.would_deny_only,
        };
        let page = convert::page(r.page.as_ref())?;
        let list = reports::list_sessions(&self.app.store, &caller.tenant_id, &filter, &page).await?;
        let sessions = list.items.into_iter().map(convert::session).collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions, next_page_token: list.next_page_token }))
    }

    async fn list_flags(
        &self,
        request: Request<pb::ListFlagsRequest>,
    ) -> Result<Response<pb::ListFlagsResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let mut statuses: Vec<reports::FlagStatus> =
            r.statuses.iter().map(|s| convert::status_filter("statuses", *s)).collect::<Result<_, _>>()?;
        if r.status != pb::FlagStatus::Unspecified as i32 {
            statuses.push(convert::status_filter("status", r.status)?);
        }
        let filter = FlagFilter {
            window: convert::window(r.range.as_ref())?,
            kinds: r.kinds.iter().map(|k| reports::parse_kind("kinds", k)).collect::<Result<_, _>>()?,
            severities: r
                .severities
                .iter()
                .map(|s| convert::severity_filter("severities", *s))
                .collect::<Result<_, _>>()?,
            statuses,
            worker_external_id: r.worker_external_id.clone(),
            device_id: r.device_id.clone(),
        };
        let page = convert::page(r.page.as_ref())?;
        let list = reports::list_flags(&self.app.store, &caller.tenant_id, &filter, &page).await?;
        let flags = list.items.into_iter().map(convert::flag).collect();
        Ok(Response::new(pb::ListFlagsResponse { flags, next_page_token: list.next_page_token }))
    }

    async fn get_device_timeline(
        &self,
        request: Request<pb::GetDeviceTimelineRequest>,
    ) -> Result<Response<pb::GetDeviceTimelineResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let window = convert::window(r.range.as_ref())?;
        let page = convert::page(r.page.as_ref())?;
        let timeline =
            reports::device_timeline(&self.app.store, &caller.tenant_id, &r.device_id, &window, &page).await?;
        Ok(Response::new(convert::timeline(timeline)))
    }

    async fn get_summary(
        &self,
        request: Request<pb::GetSummaryRequest>,
    ) -> Result<Response<pb::GetSummaryResponse>, Status> {
        let caller = authorize(&self.app, &request, READERS).await?;
        let r = request.get_ref();
        let summary_request = SummaryRequest {
            window: convert::window(r.range.as_ref())?,
            top_clusters: usize::try_from(r.top_clusters).unwrap_or(usize::MAX),
            min_failures: i64::from(r.min_failures),
        };
        let summary = reports::summary(&self.app.store, &caller.tenant_id, &summary_request).await?;
        Ok(Response::new(convert::summary(summary)))
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
        let flag_id = crate::domain::error::required("flag_id", &r.flag_id)?;
        let review = match pb::FlagStatus::try_from(r.status) {
            Ok(pb::FlagStatus::Acknowledged) => Review::Acknowledge,
            Ok(pb::FlagStatus::Resolved) => Review::Resolve,
            Ok(pb::FlagStatus::Open) => Review::Reopen,
            _ => return Err(ApiError::invalid("status must be ACKNOWLEDGED, RESOLVED or OPEN").into()),
        };
        let updated = review::review(&self.app, &caller, flag_id, review, &r.note).await?;
        Ok(Response::new(stored_flag(updated, &caller.tenant_id)))
    }
}
