//! Completing the EK chain by authorityInfoAccess: when no certificate at hand issued the last
//! certificate of the chain and it names a caIssuers URL, the agent fetches the issuer from
//! the device (it has the network; tetherd never fetches anything a device names).
//!
//! Each fetch is one bounded HTTP/1.1 GET (hyper's client connection, with rustls and the
//! operating system's roots for https — the stack tonic already brings): [`FETCH_TIMEOUT`] for
//! the whole exchange, [`MAX_RESPONSE_BYTES`] of body, no redirects, DER or PEM certificates
//! only. At most [`MAX_HOPS`] fetches per enrollment, and the walk stops at a self-signed
//! certificate. A failed fetch is logged and enrollment goes on with what it has: tetherd then
//! decides, and an incomplete chain is simply not attested.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::ek_chain::{self, Candidate, WalkEnd};

/// The whole exchange of one fetch (resolve, connect, TLS, request, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A response body larger than this is refused (a CA certificate is ~1-2 KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// At most this many issuers are fetched per enrollment.
pub const MAX_HOPS: usize = 3;
/// At most this many certificates are taken from one (PEM) response.
const MAX_CERTS_PER_RESPONSE: usize = 4;

/// Adds issuers fetched by AIA to `candidates` until the walk from `ek` ends at a self-signed
/// certificate, finds no URL, fails, or has fetched [`MAX_HOPS`] times. With `fetch` false it
/// only says, in the log, what is missing.
pub async fn complete(ek: &[u8], candidates: &mut Vec<Candidate>, fetch: bool) {
    let mut hops = 0;
    loop {
        let (_, end) = ek_chain::walk(ek, candidates);
        let (subject, urls) = match end {
            WalkEnd::SelfSigned => return,
            WalkEnd::Stopped(why) => {
                tracing::warn!("EK chain: {why}; sending what the agent has");
                return;
            }
            WalkEnd::IssuerMissing { subject, ca_issuers } => (subject, ca_issuers),
        };
        let Some(url) = urls.first() else {
            tracing::info!(%subject, "EK chain: no local issuer and no caIssuers URL; tetherd needs the issuer as a trust anchor");
            return;
        };
        if !fetch {
            tracing::warn!(%subject, %url, "EK chain: no local issuer; AIA fetching is off (--no-aia-fetch), so it is not fetched");
            return;
        }
        if hops >= MAX_HOPS {
            tracing::warn!(%subject, %url, "EK chain: not fetched, at most {MAX_HOPS} issuers are fetched by AIA");
            return;
        }
        hops += 1;
        let last = ek_chain::walk(ek, candidates).0.last().and_then(|&i| candidates.get(i)).map(|c| c.der.clone());
        let last = last.as_deref().unwrap_or(ek);
        match fetch_certificates(url).await {
            Ok(certs) => {
                let issuers: Vec<Vec<u8>> = certs.into_iter().filter(|c| ek_chain::issues(c, last)).collect();
                if issuers.is_empty() {
                    tracing::warn!(%subject, %url, "EK chain: the certificate fetched by AIA is not the issuer; ignored");
                    return;
                }
                tracing::info!(%subject, %url, "EK chain: issuer fetched by AIA");
                candidates.extend(issuers.into_iter().map(|der| Candidate { der, source: format!("AIA {url}") }));
            }
            Err(why) => {
                tracing::warn!(%subject, %url, "EK chain: fetching the issuer by AIA failed: {why}");
                return;
            }
        }
    }
}

/// GETs `url` and reads the certificates in the response (DER or PEM), within the bounds.
pub async fn fetch_certificates(url: &str) -> Result<Vec<Vec<u8>>, String> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, get(url))
        .await
        .map_err(|_| format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs()))??;
    decode_certificates(&body)
}

/// The certificates in an AIA response: one DER certificate, or PEM CERTIFICATE blocks.
pub fn decode_certificates(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text_start = body.iter().position(|b| !b.is_ascii_whitespace()).and_then(|i| body.get(i..));
    if text_start.is_some_and(|t| t.starts_with(b"-----BEGIN")) {
        let pem = std::str::from_utf8(body).map_err(|_| "the PEM response is not text".to_string())?;
        let mut certs = ek_chain::pem_certificates(pem)?;
        if certs.is_empty() {
            return Err("the PEM response holds no CERTIFICATE block".into());
        }
        certs.truncate(MAX_CERTS_PER_RESPONSE);
        return Ok(certs);
    }
    if is_pkcs7(body) {
        return Err("the response is PKCS#7 (.p7c), which the agent does not read; \
             give the issuer with --ek-intermediates instead"
            .into());
    }
    match ek_chain::first_certificate(body) {
        Some(der)
            if der.len() == body.len() && ek_chain::split_der_certificates(der, 1).is_ok_and(|(c, _)| c.len() == 1) =>
        {
            Ok(vec![der.to_vec()])
        }
        _ => Err("the response is neither a DER nor a PEM certificate".into()),
    }
}

/// A DER ContentInfo of type signedData (1.2.840.113549.1.7.2) near the start.
fn is_pkcs7(body: &[u8]) -> bool {
    const SIGNED_DATA: [u8; 11] = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    body.get(..32).unwrap_or(body).windows(SIGNED_DATA.len()).any(|w| w == SIGNED_DATA)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn get(url: &str) -> Result<Vec<u8>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// URLs are fetched".into()),
    };
    let authority = uri.authority().ok_or("the URL names no host")?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connecting: {e}"))?;
    let io: Box<dyn Io> = if https {
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        Box::new(TlsConnector::from(tls_config()?).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, concat!("tether-agent/", env!("CARGO_PKG_VERSION")))
        .header(http::header::ACCEPT, "application/pkix-cert, application/x-x509-ca-cert, application/x-pem-file")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let result = read_response(sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))).await;
    driver.abort();
    result
}

async fn read_response(response: Result<http::Response<hyper::body::Incoming>, String>) -> Result<Vec<u8>, String> {
    let response = response?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!("HTTP {} (redirects are not followed)", status.as_u16()));
    }
    if status != StatusCode::OK {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let announced = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"));
    }
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > MAX_RESPONSE_BYTES {
                return Err(format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// rustls on ring with the operating system's roots: a company proxy's CA lives there.
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // One unparsable certificate in the system store must not disable the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates in the operating system's store".to_string());
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
#[path = "aia_tests.rs"]
mod tests;
