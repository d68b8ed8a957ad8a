//! AdminService's SIEM integrations (crate::domain::siem::config).

use super::{ADMIN, AdminApi};
use crate::domain::error::{ApiResult, required};
use crate::domain::siem::config::{self, NewIntegration};
use crate::store::outbox::Integration;
use crate::transport::rpc::authorize;
use tether_proto::v1 as pb;
use tonic::Request;

fn to_proto(i: &Integration) -> pb::Integration {
    pb::Integration {
        id: i.id.clone(),
        name: i.name.clone(),
        kind: i.kind.clone(),
        target: i.target.clone(),
        format: i.format.clone(),
        tls: i.tls,
        created_at_ms: i.created_at_ms,
        created_by: i.created_by.clone(),
        delivered: i.delivered,
        last_delivered_at_ms: i.last_delivered_at_ms,
        failures: i.failures,
        last_error: i.last_error.clone(),
        next_attempt_ms: i.next_attempt_ms,
    }
}

impl AdminApi {
    pub(super) async fn do_add_integration(
        &self,
        request: Request<pb::AddIntegrationRequest>,
    ) -> ApiResult<pb::AddIntegrationResponse> {
        let caller = authorize(&self.app, &request, ADMIN).await?;
        let r = request.into_inner();
        let format = if r.format.is_empty() { "json".to_string() } else { r.format };
        let new = NewIntegration { name: r.name, kind: r.kind, target: r.target, format, tls: r.tls };
        let added = config::add(&self.app, &caller, new).await?;
        Ok(pb::AddIntegrationResponse { integration: Some(to_proto(&added)), secret: added.secret })
    }

    pub(super) async fn do_list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> ApiResult<pb::ListIntegrationsResponse> {
        let caller = authorize(&self.app, &request, ADMIN).await?;
        let all = config::list(&self.app, &caller).await?;
        Ok(pb::ListIntegrationsResponse { integrations: all.iter().map(to_proto).collect() })
    }

    pub(super) async fn do_remove_integration(
        &self,
        request: Request<pb::RemoveIntegrationRequest>,
    ) -> ApiResult<pb::Integration> {
        let caller = authorize(&self.app, &request, ADMIN).await?;
        let id = required("id", &request.get_ref().id)?;
        Ok(to_proto(&config::remove(&self.app, &caller, id).await?))
    }
}
