//! `envoy.service.auth.v3.Authorization`: Envoy's external authorization
//! over gRPC. Envoy authenticates like any gateway (a gateway API key in
//! `authorization: Bearer` initial metadata, or mTLS); the decision is
//! crate::domain::access::envoy's. ALLOW is an OK status with identity headers
//! for the upstream and every header that may carry a token removed; DENY is PERMISSION_DENIED
//! with a 403 whose body gives the reasons.

use crate::domain::access::envoy::{EnvoyRequest, decide, token_headers};
use crate::domain::access::reason_name;
use crate::domain::app::App;
use crate::domain::limits::Kind;
use crate::domain::tenancy::auth::Role;
use crate::transport::rpc::authorize;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::google::rpc;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

pub struct ExtAuthzApi {
    pub app: Arc<App>,
}

/// Identity headers the upstream may trust; always overwritten so a client
/// cannot smuggle its own.
pub const WORKER_HEADER: &str = "x-tether-worker";
pub const DEVICE_HEADER: &str = "x-tether-device";
pub const SESSION_HEADER: &str = "x-tether-session";
/// Open flags the tenant's policy reports without denying, as
/// `kind:severity` joined by commas, or `none`.
pub const FLAGS_HEADER: &str = "x-tether-flags";
/// On an allow in the tenant's monitor mode: the tier denials it did not
/// enforce, as reason codes joined by commas, or `none`.
pub const WOULD_DENY_HEADER: &str = "x-tether-would-deny";

pub fn would_deny(decision: &crate::domain::access::AccessDecision) -> String {
    let codes: Vec<&str> = decision.would_deny.iter().map(|(code, _)| reason_name(*code)).collect();
    if codes.is_empty() { "none".to_string() } else { codes.join(",") }
}

fn reported_flags(open: &[crate::domain::access::OpenFlag]) -> String {
    let listed: Vec<String> =
        open.iter().map(|f| format!("{}:{}", f.kind, crate::domain::risk_live::severity_name(f.severity))).collect();
    if listed.is_empty() { "none".to_string() } else { listed.join(",") }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: key.into(), value: value.into(), raw_value: Vec::new() }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

fn status(code: Code, message: String) -> Option<rpc::Status> {
    Some(rpc::Status { code: code.into(), message, details: Vec::new() })
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let caller = authorize(&self.app, &request, &[Role::Gateway, Role::Admin]).await?;
        self.app.limits.check(Kind::AccessPerTenant, &caller.tenant_id)?;
        let attributes = request.get_ref().attributes.as_ref();
        let source = attributes.and_then(|a| a.source.as_ref());
        let source_ip = source
            .and_then(|s| s.address.as_ref())
            .and_then(|a| match &a.address {
                Some(address::Address::SocketAddress(socket)) => Some(socket.address.as_str()),
                _ => None,
            })
            .unwrap_or_default();
        let no_headers = HashMap::new();
        let headers = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|h| &h.headers)
            .unwrap_or(&no_headers);
        let envoy = EnvoyRequest {
            gateway_id: crate::domain::access::envoy::GATEWAY_ID,
            source_ip,
            certificate: source.map(|s| s.certificate.as_str()).unwrap_or_default(),
            headers,
        };
        let decision = decide(&self.app, &caller.tenant_id, &envoy).await?;
        tracing::info!(
            tenant = %caller.tenant_id, device = %decision.device_id, allow = decision.allow,
            reasons = decision.reasons.len(), "ext_authz decision"
        );
        if decision.allow {
            let ok = OkHttpResponse {
                headers: vec![
                    header(WORKER_HEADER, &decision.worker_external_id),
                    header(DEVICE_HEADER, &decision.device_id),
                    header(SESSION_HEADER, &decision.session_id),
                    header(FLAGS_HEADER, &reported_flags(&decision.open_flags)),
                    header(WOULD_DENY_HEADER, &would_deny(&decision)),
                ],
                headers_to_remove: token_headers(headers),
                ..Default::default()
            };
            return Ok(Response::new(CheckResponse {
                status: status(Code::Ok, String::new()),
                http_response: Some(HttpResponse::OkResponse(ok)),
                ..Default::default()
            }));
        }
        let reasons: Vec<String> =
            decision.reasons.iter().map(|(code, detail)| format!("{}: {detail}", reason_name(*code))).collect();
        let body = format!("access denied by Tether (session {})\n{}\n", decision.session_id, reasons.join("\n"));
        let denied = DeniedHttpResponse {
            status: Some(HttpStatus { code: HttpStatusCode::Forbidden.into() }),
            headers: vec![
                header("content-type", "text/plain; charset=utf-8"),
                header(SESSION_HEADER, &decision.session_id),
            ],
            body,
        };
        Ok(Response::new(CheckResponse {
            status: status(Code::PermissionDenied, reasons.join("; ")),
            http_response: Some(HttpResponse::DeniedResponse(denied)),
            ..Default::default()
        }))
    }
}
