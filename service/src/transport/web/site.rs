//! Which tenant a request is for (its Host against the tenants' configured
//! origins), who sent it (the TCP peer, or a trusted proxy's
//! `X-Forwarded-For`), and the checks every state-changing call passes.

use super::Web;
use crate::domain::limits::Kind;
use crate::store::tenants::{self, Tenant};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The double-submit CSRF cookie; the page carries the same value for the script to send back.
pub const CSRF_COOKIE: &str = "tether_web_csrf";
/// The header a script sends the CSRF token in (a custom header also forces a CORS preflight).
pub const CSRF_HEADER: &str = "x-tether-csrf";
/// Names (never authorizes) the credential this browser enrolled.
pub const DEVICE_COOKIE: &str = "tether_device";
/// `X-Forwarded-For` hops looked at, from the right, at most.
const MAX_FORWARDED_HOPS: usize = 16;

/// The tenant whose site this request reached, and its sender.
pub struct Site {
    pub tenant: Tenant,
    pub source_ip: String,
    api: bool,
}

impl Site {
    /// A refusal in the form the caller reads: JSON for the script's calls, a page otherwise.
    pub fn refuse(&self, status: StatusCode, reason: &str) -> Response {
        refusal(self.api, status, reason)
    }

    /// Every POST: from the tenant's own origin (browsers always send Origin on
    /// a POST fetch) and carrying the CSRF token its page was given.
    /// None when the POST may go on, else its refusal.
    pub fn post_refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if origin != self.tenant.policy.origin {
            return Some(self.refuse(
                StatusCode::FORBIDDEN,
                "This request did not come from this site's own pages; reload the page and try again.",
            ));
        }
        let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if cookie.is_empty() || !bool::from(subtle::ConstantTimeEq::ct_eq(cookie.as_bytes(), presented.as_bytes())) {
            return Some(self.refuse(
                StatusCode::FORBIDDEN,
                "The page's security token is missing or stale; reload the page and try again.",
            ));
        }
        None
    }
}

pub fn refusal(api: bool, status: StatusCode, reason: &str) -> Response {
    if api { super::api::refusal(status, reason) } else { super::pages::failure(status, reason) }
}

impl FromRequestParts<Arc<Web>> for Site {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Site, Response> {
        let api = parts.uri.path().starts_with("/api/");
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let source_ip = source_ip(peer, &parts.headers, &web.settings.trusted_proxies);
        web.pages.check(Kind::EnrollmentPerAddress, &source_ip).map_err(|e| {
            let mut response = refusal(api, StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            if let crate::domain::error::ApiError::ResourceExhausted { retry_after, .. } = e
                && let Ok(value) = retry_after.as_secs().max(1).to_string().parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        })?;
        let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some(origins) = candidate_origins(host, web.settings.tls) else {
            return Err(refusal(api, StatusCode::BAD_REQUEST, "The request's Host header is missing or malformed."));
        };
        let mut found =
            tenants::by_origins(&web.app.store, &origins).await.map_err(|e| super::api::api_failure(api, e.into()))?;
        match found.len() {
            1 => Ok(Site { tenant: found.remove(0), source_ip, api }),
            0 => Err(refusal(
                api,
                StatusCode::NOT_FOUND,
                "No organization's Tether site is configured at this address; \
                 open the link your administrator sent you.",
            )),
            // Two tenants claiming one origin cannot both own its RP ID: serve neither.
            _ => Err(refusal(
                api,
                StatusCode::CONFLICT,
                "More than one organization is configured at this address; ask your administrator to fix it.",
            )),
        }
    }
}

/// The origins a Host header can stand for: `https://host`, and over plain
/// HTTP (loopback development, or behind a TLS-terminating proxy) also
/// `http://host`; default ports dropped as browsers do. None for a Host that is
/// not a plain `name[:port]` / `[v6][:port]`.
pub fn candidate_origins(host: &str, tls: bool) -> Option<Vec<String>> {
    let host = host.trim().to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || host.len() > 255 || !host.chars().all(allowed) {
        return None;
    }
    let mut origins = vec![format!("https://{}", host.strip_suffix(":443").unwrap_or(&host))];
    if !tls {
        origins.push(format!("http://{}", host.strip_suffix(":80").unwrap_or(&host)));
    }
    Some(origins)
}

/// The sender's address: the TCP peer, unless the peer is a trusted proxy; then
/// the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy (the
/// ones to its left are the client's own claims). A hop that does not parse
/// stops the walk at the proxy's own address, so a malformed header cannot
/// name somebody else. Canonical form; empty when the peer is unknown.
pub fn source_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> String {
    let Some(peer) = peer else { return String::new() };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut sender = peer.ip().to_canonical();
    if !is_trusted(&sender) {
        return sender.to_string();
    }
    let hops = forwarded_for(headers);
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                sender = ip.to_canonical();
                if !is_trusted(&sender) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    sender.to_string()
}

/// Every `X-Forwarded-For` hop, left (the client's claim) to right (the last proxy's).
pub fn forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Cookie values this app sets are base64url; anything else is not ours.
pub fn is_token_like(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let headers = forwarded(&["198.51.100.7, 203.0.113.9"]);
        // Not a trusted peer: its header is ignored.
        let stranger: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_eq!(source_ip(Some(stranger), &headers, &trusted), "192.0.2.1");
        assert_eq!(source_ip(Some(proxy), &headers, &[]), "10.0.0.5");
        // Trusted: the rightmost hop; the client-supplied left part is not believed.
        assert_eq!(source_ip(Some(proxy), &headers, &trusted), "203.0.113.9");
        // Chained trusted proxies are skipped.
        let chained = forwarded(&["198.51.100.7", "203.0.113.9, 10.0.0.6"]);
        assert_eq!(source_ip(Some(proxy), &chained, &trusted), "203.0.113.9");
        // Garbage stops at the proxy's own address; no header is the proxy itself.
        assert_eq!(source_ip(Some(proxy), &forwarded(&["evil, nonsense"]), &trusted), "10.0.0.5");
        assert_eq!(source_ip(Some(proxy), &HeaderMap::new(), &trusted), "10.0.0.5");
        assert_eq!(source_ip(None, &headers, &trusted), "");
    }

    #[test]
    fn hosts_map_to_origins_and_malformed_hosts_to_none() {
        assert_eq!(
            candidate_origins("Work.Example.com:443", true).unwrap(),
            vec!["https://work.example.com".to_string()]
        );
        assert_eq!(
            candidate_origins("localhost:8080", false).unwrap(),
            vec!["https://localhost:8080".to_string(), "http://localhost:8080".to_string()]
        );
        assert_eq!(candidate_origins("a.example:80", false).unwrap()[1], "http://a.example");
        for bad in ["", "evil.com/path", "a b", "x\"y", "host@evil"] {
            assert!(candidate_origins(bad, false).is_none(), "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; tether_device=abc_-9; x_tether_device=no"));
        assert_eq!(cookie(&headers, DEVICE_COOKIE).as_deref(), Some("abc_-9"));
        assert!(cookie(&headers, "b").is_none());
        assert!(is_token_like("abc_-9") && !is_token_like("a;b") && !is_token_like(""));
    }
}
