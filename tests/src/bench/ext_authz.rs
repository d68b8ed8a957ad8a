//! Envoy external authorization as a benchmark gateway: what Envoy sends to
//! tetherd's `envoy.service.auth.v3.Authorization/Check` for one HTTP request
//! from a device, as tests/tests/ext_authz.rs builds it — the device
//! certificate Envoy verified and forwards (`include_peer_certificate`,
//! URL-encoded PEM naming `tether://tenant/<tenant>/device/<device id>`), the
//! downstream address, and the request's headers; the gateway key goes in
//! `authorization: Bearer` metadata like any gateway's.
//!
//! Certificates are made before the timed section ([`certificates`]): one
//! per device the load will name, issued by a throwaway device CA (P-256) to
//! one shared leaf key (tetherd reads the leaf's URI name and validity; the
//! chain is Envoy's to verify), so the measured call is only tetherd's work.

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Device id → the URL-encoded PEM certificate Envoy would forward for it.
pub type Certificates = HashMap<String, String>;

/// Makes a certificate for each of `devices` (ids of `tenant_id`), on all cores.
pub fn certificates(tenant_id: &str, devices: Vec<String>) -> anyhow::Result<Certificates> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "tether-bench device CA");
    let issuer = Issuer::new(ca, KeyPair::generate()?);
    let leaf_key = KeyPair::generate()?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = devices.len().div_ceil(threads).max(1);
    let made: Vec<anyhow::Result<Vec<(String, String)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = devices
            .chunks(chunk)
            .map(|ids| {
                let (issuer, leaf_key) = (&issuer, &leaf_key);
                scope.spawn(move || {
                    ids.iter()
                        .map(|device| {
                            let uri = format!("tether://tenant/{tenant_id}/device/{device}");
                            let mut params = CertificateParams::new(Vec::<String>::new())?;
                            params.distinguished_name.push(DnType::CommonName, "laptop");
                            params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into()?)];
                            let pem = params.signed_by(leaf_key, issuer)?.pem();
                            Ok((device.clone(), url_encode(&pem)))
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("certificate thread")).collect()
    });
    let mut certificates = Certificates::with_capacity(devices.len());
    for part in made {
        certificates.extend(part?);
    }
    Ok(certificates)
}

/// Envoy's URL encoding of the PEM: everything but unreserved characters escaped.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The request headers Envoy forwards with a browser's GET (lower-case, with
/// the HTTP/2 pseudo-headers), carrying no Tether token: the device is named
/// by its certificate.
pub fn browser_headers() -> HashMap<String, String> {
    [
        (":authority", "payroll.internal.example"),
        (":method", "GET"),
        (":path", "/payroll"),
        (":scheme", "https"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-encoding", "gzip, deflate, br"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) tether-bench"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "6f1c2a4e-2b8d-4f7e-9a51-3c0d8e7b9f10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The Check request for one HTTP request from `source` with `certificate`.
pub fn check_request(certificate: &str, source: Ipv4Addr, headers: HashMap<String, String>) -> CheckRequest {
    let address = Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: source.to_string(),
            ..Default::default()
        })),
    };
    let http = HttpRequest {
        method: "GET".into(),
        path: "/payroll".into(),
        host: "payroll.internal.example".into(),
        scheme: "https".into(),
        protocol: "HTTP/2".into(),
        headers,
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer { address: Some(address), certificate: certificate.to_string(), ..Default::default() }),
            request: Some(AttrRequest { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_gets_a_certificate_tetherd_reads_as_that_device_of_the_tenant() {
        let devices: Vec<String> = (0..5).map(crate::bench::seed::device_id).collect();
        let made = certificates("ten_a", devices.clone()).unwrap();
        assert_eq!(made.len(), 5);
        for device in &devices {
            let named = tetherd::domain::access::envoy::device_from_certificate(&made[device]).unwrap();
            assert_eq!(named, ("ten_a".to_string(), device.clone()));
        }
        assert_eq!(url_encode("a b/~"), "a%20b%2F~");
    }
}
