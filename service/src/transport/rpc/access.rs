//! AccessService: gateway decisions.

use crate::domain::access::{AccessDecision, AccessQuery, check, reason_name};
use crate::domain::app::App;
use crate::domain::limits::Kind;
use crate::domain::tenancy::auth::Role;
use crate::transport::rpc::authorize;
use std::sync::Arc;
use tether_proto::v1::{self as pb, access_service_server::AccessService};
use tonic::{Request, Response, Status};

pub struct AccessApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let caller = authorize(&self.app, &request, &[Role::Gateway, Role::Admin]).await?;
        self.app.limits.check(Kind::AccessPerTenant, &caller.tenant_id)?;
        let r = request.get_ref();
        let query = AccessQuery {
            tenant_id: &caller.tenant_id,
            worker_external_id: &r.worker_external_id,
            device_id: &r.device_id,
            credential_id: &r.credential_id,
            source_ip: &r.source_ip,
            gateway_id: &r.gateway_id,
        };
        let decision = if r.access_token.is_empty() {
            check(&self.app, &query).await?
        } else {
            crate::domain::access::token::check_with_token(&self.app, &caller.tenant_id, r).await?
        };
        record_access(&decision);
        tracing::info!(
            tenant = %caller.tenant_id, worker = %r.worker_external_id.trim(), device = %decision.device_id,
            allow = decision.allow, reasons = decision.reasons.len(), "access decision"
        );
        Ok(Response::new(decision.to_proto()))
    }

    async fn get_access_token_keys(
        &self,
        request: Request<pb::GetAccessTokenKeysRequest>,
    ) -> Result<Response<pb::GetAccessTokenKeysResponse>, Status> {
        let caller = authorize(&self.app, &request, &[Role::Gateway, Role::Admin]).await?;
        Ok(Response::new(crate::domain::access::token::keys(&self.app)?.to_proto(&caller.tenant_id)))
    }
}

/// One gateway decision into the metrics: its result and each deny reason.
fn record_access(decision: &AccessDecision) {
    crate::telemetry::record_access_result(decision.allow, decision.reasons.iter().map(|(code, _)| reason_name(*code)));
}
