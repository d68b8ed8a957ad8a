//! gRPC transport: authenticate, convert, call the domain, map errors.

pub mod access;
pub mod admin;
mod admin_mds;
pub mod device;
pub mod ext_authz;
pub mod report;
pub mod streams;

use crate::domain::app::App;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::tenancy::auth::{self, Caller, Role};
use crate::store::presence::Cursor;
use crate::util::b64url;
use tether_proto::v1 as pb;
use tonic::Request;

/// The caller: its bearer API key, or else its mutual-TLS client certificate,
/// with one of the `allowed` roles.
pub async fn authorize<T>(app: &App, request: &Request<T>, allowed: &[Role]) -> ApiResult<Caller> {
    let authorization = request.metadata().get("authorization").map(|value| value.as_bytes());
    let certificates = request.peer_certs();
    let leaf = certificates.as_deref().and_then(|chain| chain.first()).map(|cert| cert.as_ref());
    auth::authenticate(app, authorization, leaf, allowed).await
}

/// The caller's address as seen on the socket, canonical form; empty when unknown.
pub fn peer_ip<T>(request: &Request<T>) -> String {
    request.remote_addr().map(|a| a.ip().to_canonical().to_string()).unwrap_or_default()
}

pub fn page_size(page: Option<&pb::Page>) -> i64 {
    match page.map(|p| p.page_size).unwrap_or(0) {
        0 => 50,
        n => i64::from(n.min(500)),
    }
}

fn decode_token(token: &str) -> ApiResult<String> {
    let invalid = || ApiError::invalid("page.page_token is not a token this server issued");
    let bytes = tether_attestation::b64url_decode(token).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Cursor for id-ordered listings.
pub fn id_cursor(page: Option<&pb::Page>) -> ApiResult<String> {
    match page.map(|p| p.page_token.as_str()).unwrap_or("") {
        "" => Ok(String::new()),
        token => decode_token(token),
    }
}

pub fn id_token(last_id: Option<&str>, returned: usize, limit: i64) -> String {
    match last_id {
        Some(id) if returned as i64 == limit => b64url(id.as_bytes()),
        _ => String::new(),
    }
}

/// Cursor for newest-first listings.
pub fn time_cursor(page: Option<&pb::Page>) -> ApiResult<Cursor> {
    match page.map(|p| p.page_token.as_str()).unwrap_or("") {
        "" => Ok(Cursor::start()),
        token => {
            let text = decode_token(token)?;
            let (at, id) = text
                .split_once(':')
                .ok_or_else(|| ApiError::invalid("page.page_token is not a token this server issued"))?;
            let at_ms =
                at.parse().map_err(|_| ApiError::invalid("page.page_token is not a token this server issued"))?;
            Ok(Cursor { at_ms, id: id.to_string() })
        }
    }
}

pub fn time_token(last: Option<(i64, &str)>, returned: usize, limit: i64) -> String {
    match last {
        Some((at, id)) if returned as i64 == limit => b64url(format!("{at}:{id}").as_bytes()),
        _ => String::new(),
    }
}

pub fn time_range(range: Option<&pb::TimeRange>) -> ApiResult<(i64, i64)> {
    let (since, until) = range.map(|r| (r.since_ms, r.until_ms)).unwrap_or((0, 0));
    if since < 0 || until < 0 {
        return Err(ApiError::invalid("range: times must not be negative"));
    }
    if until != 0 && since > until {
        return Err(ApiError::invalid("range.since_ms is after range.until_ms"));
    }
    Ok((since, until))
}
