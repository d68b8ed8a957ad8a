//! Who is behind a request Envoy asks about: a device certificate Envoy
//! verified and forwarded (`tether://tenant/<tenant>/device/<device id>`
//! URI name), or a Tether access token in a header. Then the normal access
//! decision. Anything missing or unusable is a recorded DENY, never an ALLOW.

use crate::domain::access::{AccessDecision, AccessQuery, check_with};
use crate::domain::app::App;
use crate::domain::error::ApiResult;
use crate::store::inventory;
use std::collections::HashMap;
use tether_proto::v1::{self as pb, DenyReason};

/// The gateway id sessions decided for Envoy are recorded under.
pub const GATEWAY_ID: &str = "envoy";
/// The header a client may carry its access token in (besides `authorization: Tether <token>`).
pub const TOKEN_HEADER: &str = "x-tether-access-token";
const DEVICE_URI_PREFIX: &str = "tether://tenant/";
/// A forwarded certificate longer than this is refused unparsed.
const MAX_CERTIFICATE_CHARS: usize = 64 * 1024;

/// What Envoy (or a forward-auth gateway: nginx, Traefik, Caddy) tells us about one request.
pub struct EnvoyRequest<'a> {
    /// The gateway id the session is recorded under ([`GATEWAY_ID`] for Envoy).
    pub gateway_id: &'a str,
    /// `attributes.source.address` (the downstream client).
    pub source_ip: &'a str,
    /// `attributes.source.certificate`: URL-encoded PEM, empty without one.
    pub certificate: &'a str,
    /// `attributes.request.http.headers` (lower-case names).
    pub headers: &'a HashMap<String, String>,
}

/// The access token a request carries: [`TOKEN_HEADER`] first, else `authorization: Tether <token>`.
pub fn find_token(headers: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = headers.get(TOKEN_HEADER).map(|t| t.trim()).filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    let value = headers.get("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("tether") && !token.trim().is_empty()).then(|| token.trim().to_string())
}

/// Every header that may carry a Tether token, to be removed before the
/// request goes upstream: a bearer token must not reach the application,
/// whichever header was checked. Another `authorization` scheme is the
/// upstream's own and is kept.
pub fn token_headers(headers: &HashMap<String, String>) -> Vec<String> {
    let mut names = vec![TOKEN_HEADER.to_string()];
    let tether_scheme = headers.get("authorization").is_some_and(|value| {
        let scheme = value.trim().split(|c: char| c.is_ascii_whitespace()).next().unwrap_or_default();
        scheme.eq_ignore_ascii_case("tether")
    });
    if tether_scheme {
        names.push("authorization".to_string());
    }
    names
}

/// Decides for `tenant_id` (the caller's), recording the session.
pub async fn decide(app: &App, tenant_id: &str, r: &EnvoyRequest<'_>) -> ApiResult<AccessDecision> {
    if let Some(token) = find_token(r.headers) {
        let request = pb::CheckAccessRequest {
            access_token: token,
            source_ip: r.source_ip.to_string(),
            gateway_id: r.gateway_id.into(),
            ..Default::default()
        };
        return crate::domain::access::token::check_with_token(app, tenant_id, &request).await;
    }
    let refuse = |device_id: &str, code: DenyReason, why: String| {
        let device_id = device_id.to_string();
        async move {
            let query = AccessQuery {
                tenant_id,
                worker_external_id: "",
                device_id: &device_id,
                credential_id: "",
                source_ip: r.source_ip,
                gateway_id: r.gateway_id,
            };
            check_with(app, &query, vec![(code, why)]).await
        }
    };
    if r.certificate.trim().is_empty() {
        let why = "no client certificate and no access token: present a device certificate (mTLS) or \
                   'x-tether-access-token: <token>'";
        return refuse("", DenyReason::IdentityMissing, why.into()).await;
    }
    let (cert_tenant, device_id) = match device_from_certificate(r.certificate) {
        Ok(named) => named,
        Err(why) => return refuse("", DenyReason::ClientCertificateInvalid, why).await,
    };
    if cert_tenant != tenant_id {
        let why = format!("the client certificate names tenant {cert_tenant:?}, not this gateway's tenant");
        return refuse(&device_id, DenyReason::ClientCertificateInvalid, why).await;
    }
    let worker = match inventory::get_device(&app.store, tenant_id, &device_id).await? {
        Some(device) => device.worker_external_id.unwrap_or_default(),
        None => {
            let why = format!("the client certificate names device {device_id:?}, which is not in the inventory");
            return refuse(&device_id, DenyReason::DeviceNotEnrolled, why).await;
        }
    };
    if worker.is_empty() {
        let why = "the device is not assigned to a worker".to_string();
        return refuse(&device_id, DenyReason::DeviceNotAssignedToWorker, why).await;
    }
    let query = AccessQuery {
        tenant_id,
        worker_external_id: &worker,
        device_id: &device_id,
        credential_id: "",
        source_ip: r.source_ip,
        gateway_id: r.gateway_id,
    };
    check_with(app, &query, Vec::new()).await
}

/// (tenant, device id) from the URL-encoded PEM leaf certificate Envoy
/// forwards. The chain was verified by Envoy against the device CA; the
/// validity period is checked again here.
pub fn device_from_certificate(url_encoded_pem: &str) -> Result<(String, String), String> {
    if url_encoded_pem.len() > MAX_CERTIFICATE_CHARS {
        return Err("the client certificate is too large".into());
    }
    let pem = percent_decode(url_encoded_pem.trim())
        .ok_or_else(|| "the client certificate is not URL-encoded PEM".to_string())?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|_| "the client certificate is not a PEM certificate".to_string())?;
    let cert = block.parse_x509().map_err(|_| "the client certificate does not parse as X.509".to_string())?;
    if !cert.validity().is_valid() {
        return Err("the client certificate is expired or not yet valid".into());
    }
    let uris: Vec<&str> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(DEVICE_URI_PREFIX) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(format!(
            "the client certificate must carry exactly one tether://tenant/<tenant>/device/<device id> URI name; \
             it has {}",
            uris.len()
        ));
    };
    let rest = &uri[DEVICE_URI_PREFIX.len()..];
    let (tenant, device) = rest
        .split_once("/device/")
        .filter(|(t, d)| !t.is_empty() && !d.is_empty() && !t.contains('/') && !d.contains('/') && d.len() <= 256)
        .ok_or_else(|| {
            format!("the certificate's URI name {uri:?} is not tether://tenant/<tenant>/device/<device id>")
        })?;
    Ok((tenant.to_string(), device.to_string()))
}

/// %XX decoding (Envoy URL-encodes the PEM); anything else is kept as is.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_either_header() {
        let mut headers = HashMap::new();
        assert_eq!(find_token(&headers), None);
        headers.insert("authorization".to_string(), "Bearer abc".to_string());
        assert_eq!(find_token(&headers), None, "a bearer credential is not a Tether token");
        headers.insert("authorization".to_string(), "Tether tt1.a.b.c".to_string());
        assert_eq!(find_token(&headers).as_deref(), Some("tt1.a.b.c"));
        headers.insert(TOKEN_HEADER.to_string(), " tt1.x.y.z ".to_string());
        assert_eq!(find_token(&headers).as_deref(), Some("tt1.x.y.z"));
    }

    #[test]
    fn every_header_that_may_carry_a_token_is_stripped() {
        let headers = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let both = headers(&[(TOKEN_HEADER, "tt1.x"), ("authorization", "Tether tt1.y")]);
        let mut stripped = token_headers(&both);
        stripped.sort();
        assert_eq!(stripped, ["authorization", TOKEN_HEADER]);
        for scheme_only in ["tether", "TETHER\ttt1.z", "  Tether  "] {
            assert!(token_headers(&headers(&[("authorization", scheme_only)])).contains(&"authorization".into()));
        }
        for upstreams_own in ["Bearer abc", "Tethered abc", "Basic dGV0aGVyOg=="] {
            let kept = token_headers(&headers(&[(TOKEN_HEADER, "tt1.x"), ("authorization", upstreams_own)]));
            assert_eq!(kept, [TOKEN_HEADER], "{upstreams_own}");
        }
    }

    #[test]
    fn percent_decoding_is_strict_about_escapes() {
        assert_eq!(percent_decode("a%20b%0A+").as_deref(), Some(&b"a b\n+"[..]));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn garbage_certificates_are_refused_with_a_reason() {
        for garbage in ["", "%", "not a pem", "-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----"] {
            assert!(device_from_certificate(garbage).is_err(), "{garbage:?}");
        }
        assert!(device_from_certificate(&"A".repeat(MAX_CERTIFICATE_CHARS + 1)).unwrap_err().contains("too large"));
    }
}
