//! Outbound connections to SIEM receivers: which addresses may be reached,
//! and TCP with optional TLS (roots from the operating system's store).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why an address is never dialled, or None when it may be: a webhook URL
/// is tenant input, and these reach the host's own cloud metadata service
/// (169.254.169.254 is link-local; AWS also answers on fd00:ec2::254).
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address (cloud metadata services live there)"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("an unspecified, broadcast or multicast address")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Some("a cloud metadata address")
        }
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => Some("an unspecified or multicast address"),
        _ => None,
    }
}

fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unparsable certificate in the system store must not disable the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates found in the operating system's store".to_string());
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

/// Resolves `host`, refuses forbidden addresses (and, with `loopback_only`,
/// everything but loopback), connects to an address it checked (so DNS cannot
/// swap it afterwards) within `timeout`, and wraps the stream in TLS when asked.
pub async fn connect(
    host: &str,
    port: u16,
    tls: bool,
    loopback_only: bool,
    timeout: Duration,
) -> Result<Box<dyn Io>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolved to no address");
    for addr in addrs {
        if let Some(why) = refused(addr.ip()) {
            last = format!("{host} resolved to {}, {why}: refused", addr.ip());
            continue;
        }
        if loopback_only && !addr.ip().is_loopback() {
            last = format!("{host} resolved to {}, not loopback: plain http is only for loopback", addr.ip());
            continue;
        }
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                last = format!("connecting to {addr}: {e}");
                continue;
            }
            Err(_) => {
                last = format!("connecting to {addr} timed out");
                continue;
            }
        };
        if !tls {
            return Ok(Box::new(stream));
        }
        let name =
            ServerName::try_from(bare.to_string()).map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let connector = TlsConnector::from(tls_config()?);
        return match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(format!("TLS with {addr}: {e}")),
            Err(_) => Err(format!("TLS with {addr} timed out")),
        };
    }
    Err(last)
}
