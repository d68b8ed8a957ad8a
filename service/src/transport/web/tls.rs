//! TLS for the web app with the gRPC listener's certificate (`--tls-cert`,
//! `--tls-key`): rustls on ring, as tonic uses. Handshakes run in their own
//! tasks, bounded in number and time, so a slow or silent client holds up
//! nobody else's connection.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once, at most; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl Acceptor {
    /// Reads a PEM certificate chain and private key; the error names the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Acceptor, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
        };
        let cert_pem = read(cert, "TLS certificate")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the TLS certificate {} is not PEM: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("the TLS certificate {} holds no certificate", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(key, "TLS private key")?)
            .map_err(|e| format!("the TLS private key {} is not a PEM private key: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("the TLS certificate and key do not make a server identity: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
    }
}

/// An axum listener of finished TLS connections.
pub struct Listener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl Listener {
    pub fn new(tcp: TcpListener, acceptor: Acceptor) -> Listener {
        let local = tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "web app: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.0.clone();
                let sender = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web app: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "web app: TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Listener { local, ready }
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
