//! Gateways over HTTP on the web listener: forward auth (nginx `auth_request`, Traefik
//! `ForwardAuth`, Caddy `forward_auth`) at `/gateway/check`, FreeRADIUS's `rest` module at
//! `/gateway/radius`, and the access-token key set at `/.well-known/jwks.json`.
//!
//! A gateway authenticates with its API key in `X-Tether-Gateway-Key` (the request's own
//! `Authorization` belongs to the client). The decisions are the domain's — the same as
//! `CheckAccess` and Envoy's ext_authz, each recorded as a session. Only a decided ALLOW is 2xx;
//! a DENY is 401 or 403, and anything that is not a decision (the gateway's own key refused,
//! storage down, a malformed request from the gateway) is 4xx/5xx other than 401/403, which
//! every one of these gateways treats as "refuse".

use super::Web;
use super::site::{cookie, forwarded_for};
use crate::domain::access::envoy::{EnvoyRequest, TOKEN_HEADER, decide};
use crate::domain::access::{AccessDecision, by_address, reason_name};
use crate::domain::error::ApiError;
use crate::domain::limits::Kind;
use crate::domain::tenancy::auth::{self, Caller, Role};
use crate::transport::rpc::ext_authz::{
    DEVICE_HEADER, FLAGS_HEADER, SESSION_HEADER, WORKER_HEADER, WOULD_DENY_HEADER, would_deny,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tether_proto::v1::DenyReason;

/// The gateway's API key (role gateway or admin).
pub const GATEWAY_KEY_HEADER: &str = "x-tether-gateway-key";
/// The address the gateway saw the client connect from.
pub const CLIENT_ADDRESS_HEADER: &str = "x-tether-client-address";
/// The client's certificate as the gateway verified it: URL-encoded PEM (nginx
/// `$ssl_client_escaped_cert`).
pub const CLIENT_CERT_HEADER: &str = "x-tether-client-cert";
/// Optional: the gateway's name, recorded with each session.
pub const GATEWAY_ID_HEADER: &str = "x-tether-gateway-id";
/// A browser may carry its access token in this cookie instead of a header.
pub const TOKEN_COOKIE: &str = "tether-access-token";
/// RADIUS caps an attribute at 253 bytes.
const MAX_REPLY_MESSAGE_BYTES: usize = 253;

/// Why a gateway request got no decision, as the status every gateway reads as "refuse".
fn not_decided(error: ApiError) -> Response {
    let status = tonic::Status::from(error);
    let code = match status.code() {
        // Not 401/403: those reach the end user as "you are denied"; this is the gateway's problem.
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => StatusCode::INTERNAL_SERVER_ERROR,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = format!("no decision (refuse the request): {}\n", status.message());
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

async fn gateway_caller(web: &Web, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = headers.get(GATEWAY_KEY_HEADER).map(|v| v.as_bytes()).ok_or_else(|| {
        ApiError::Unauthenticated(format!("the gateway sent no {GATEWAY_KEY_HEADER} header with its API key"))
    })?;
    let authorization = [b"Bearer ".as_slice(), key].concat();
    let caller = auth::authenticate(&web.app, Some(&authorization), None, &[Role::Gateway, Role::Admin]).await?;
    web.app.limits.check(Kind::AccessPerTenant, &caller.tenant_id)?;
    Ok(caller)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default()
}

/// The client's address as the gateway reports it: [`CLIENT_ADDRESS_HEADER`], else an
/// `X-Forwarded-For` with exactly one hop (Traefik replaces the client's own header with the
/// address it saw). A longer chain is ambiguous — its left end is the client's claim — and is
/// not used; the decision then refuses for want of an address.
fn client_address(headers: &HeaderMap) -> String {
    let named = header_text(headers, CLIENT_ADDRESS_HEADER);
    if !named.is_empty() {
        return named.to_string();
    }
    match forwarded_for(headers).as_slice() {
        [one] => one.to_string(),
        _ => String::new(),
    }
}

/// `GET /gateway/check` (any method: nginx's subrequest keeps the client's).
pub async fn check(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let caller = match gateway_caller(&web, &headers).await {
        Ok(caller) => caller,
        Err(error) => return not_decided(error),
    };
    // The client's headers, lower-case names, as Envoy hands them over; a token in the cookie
    // counts as one in the header.
    let mut forwarded: HashMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    if crate::domain::access::envoy::find_token(&forwarded).is_none()
        && let Some(token) = cookie(&headers, TOKEN_COOKIE).filter(|t| !t.is_empty())
    {
        forwarded.insert(TOKEN_HEADER.to_string(), token);
    }
    let source_ip = client_address(&headers);
    let gateway_id = match header_text(&headers, GATEWAY_ID_HEADER) {
        "" => "forward-auth",
        named => named,
    };
    let request = EnvoyRequest {
        gateway_id,
        source_ip: &source_ip,
        certificate: header_text(&headers, CLIENT_CERT_HEADER),
        headers: &forwarded,
    };
    match decide(&web.app, &caller.tenant_id, &request).await {
        Ok(decision) => forward_auth_answer(&decision),
        Err(error) => not_decided(error),
    }
}

fn forward_auth_answer(decision: &AccessDecision) -> Response {
    let identity = [
        (WORKER_HEADER, decision.worker_external_id.clone()),
        (DEVICE_HEADER, decision.device_id.clone()),
        (SESSION_HEADER, decision.session_id.clone()),
        (FLAGS_HEADER, reported_flags(decision)),
        (WOULD_DENY_HEADER, would_deny(decision)),
    ];
    let mut response = if decision.allow {
        (StatusCode::OK, "ALLOW\n".to_string()).into_response()
    } else {
        // 401 asks the client to prove who it is; 403 refuses a client that did.
        let unidentified = decision.reasons.iter().any(|(code, _)| {
            matches!(
                code,
                DenyReason::IdentityMissing | DenyReason::AccessTokenInvalid | DenyReason::AccessTokenExpired
            )
        });
        let status = if unidentified { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
        (status, format!("access denied by Tether (session {})\n{}\n", decision.session_id, reasons(decision, "\n")))
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    for (name, value) in identity {
        // Ids are bounded and printable; one that is not a header value is left out, never 2xx'd wrongly.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn reported_flags(decision: &AccessDecision) -> String {
    let listed: Vec<String> = decision
        .open_flags
        .iter()
        .map(|f| format!("{}:{}", f.kind, crate::domain::risk_live::severity_name(f.severity)))
        .collect();
    if listed.is_empty() { "none".to_string() } else { listed.join(",") }
}

fn reasons(decision: &AccessDecision, separator: &str) -> String {
    let listed: Vec<String> =
        decision.reasons.iter().map(|(code, detail)| format!("{}: {detail}", reason_name(*code))).collect();
    listed.join(separator)
}

/// One attribute as FreeRADIUS's `rest` module encodes it (`body = 'json'`).
#[derive(Deserialize)]
struct RadiusAttribute {
    #[serde(default)]
    value: Vec<serde_json::Value>,
}

fn first_string(attributes: &BTreeMap<String, RadiusAttribute>, name: &str) -> String {
    attributes
        .get(name)
        .and_then(|a| a.value.first())
        .and_then(|v| v.as_str())
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `POST /gateway/radius`: FreeRADIUS asks after the VPN concentrator's own authentication.
/// The worker is `User-Name`; the device is the worker's device that answered presence from
/// `Calling-Station-Id` (the client's public address), see crate::domain::access::by_address.
pub async fn radius(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match gateway_caller(&web, &headers).await {
        Ok(caller) => caller,
        Err(error) => return not_decided(error),
    };
    let attributes: BTreeMap<String, RadiusAttribute> = match serde_json::from_slice(&body) {
        Ok(attributes) => attributes,
        Err(e) => {
            return not_decided(ApiError::invalid(format!(
                "the body is not FreeRADIUS's JSON attribute encoding (rest module, body = 'json'): {e}"
            )));
        }
    };
    let worker = first_string(&attributes, "User-Name");
    let address = first_string(&attributes, "Calling-Station-Id");
    let gateway = match first_string(&attributes, "NAS-Identifier") {
        named if !named.is_empty() => named,
        _ => "radius".to_string(),
    };
    match by_address::decide(&web.app, &caller.tenant_id, &worker, &address, &gateway).await {
        Ok(decision) => radius_answer(&decision),
        Err(error) => not_decided(error),
    }
}

/// 200 (module `ok`: Access-Accept) or 401 (module `reject`: Access-Reject), each with a
/// Reply-Message. `do_xlat: false`: FreeRADIUS would otherwise expand `%{…}` in the text,
/// which carries the client-chosen User-Name.
fn radius_answer(decision: &AccessDecision) -> Response {
    let text = if decision.allow {
        format!("Tether: ALLOW device {} (session {})", decision.device_id, decision.session_id)
    } else {
        format!("Tether: DENY (session {}): {}", decision.session_id, reasons(decision, "; "))
    };
    let reply = json!({
        "reply:Reply-Message": {"value": [truncate_bytes(&text, MAX_REPLY_MESSAGE_BYTES)], "do_xlat": false, "op": ":="}
    });
    let status = if decision.allow { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    (status, Json(reply)).into_response()
}

fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `GET /.well-known/jwks.json`: the access-token verification keys (RFC 7517), for gateways
/// that verify tokens themselves (Envoy `jwt_authn`). Public by design.
pub async fn jwks(State(web): State<Arc<Web>>) -> Response {
    match crate::domain::access::token::keys(&web.app) {
        Ok(keys) => (
            [(header::CONTENT_TYPE, "application/jwk-set+json"), (header::CACHE_CONTROL, "max-age=300")],
            keys.jwks_json(),
        )
            .into_response(),
        Err(error) => not_decided(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_client_address_is_the_gateways_own_header_or_an_unambiguous_forwarded_for() {
        assert_eq!(client_address(&headers(&[(CLIENT_ADDRESS_HEADER, "192.0.2.7")])), "192.0.2.7");
        let both = headers(&[(CLIENT_ADDRESS_HEADER, "192.0.2.7"), ("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(client_address(&both), "192.0.2.7");
        assert_eq!(client_address(&headers(&[("x-forwarded-for", "198.51.100.1")])), "198.51.100.1");
        // The left end of a chain is the client's own claim.
        assert_eq!(client_address(&headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.1")])), "");
        assert_eq!(client_address(&headers(&[("x-forwarded-for", "a"), ("x-forwarded-for", "b")])), "");
        assert_eq!(client_address(&HeaderMap::new()), "");
    }

    #[test]
    fn reply_messages_fit_a_radius_attribute_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = truncate_bytes(&long, MAX_REPLY_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_REPLY_MESSAGE_BYTES && cut.len() >= MAX_REPLY_MESSAGE_BYTES - 1);
        assert_eq!(truncate_bytes("short", MAX_REPLY_MESSAGE_BYTES), "short");
    }

    #[test]
    fn radius_attributes_are_read_from_freeradius_json() {
        let body = r#"{"User-Name":{"type":"string","value":["w-alice"]},"Calling-Station-Id":{"type":"string","value":["127.0.0.9"]},"NAS-Port":{"type":"integer","value":[1]}}"#;
        let attributes: BTreeMap<String, RadiusAttribute> = serde_json::from_str(body).unwrap();
        assert_eq!(first_string(&attributes, "User-Name"), "w-alice");
        assert_eq!(first_string(&attributes, "Calling-Station-Id"), "127.0.0.9");
        assert_eq!(first_string(&attributes, "NAS-Port"), "", "a number is not a name");
        assert_eq!(first_string(&attributes, "NAS-Identifier"), "");
    }
}
