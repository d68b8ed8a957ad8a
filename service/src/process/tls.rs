//! TLS for the gRPC listener, with optional mutual TLS: a client CA whose
//! certificates identify gateways (or other callers) by a
//! `tether://tenant/<id>/role/<role>` URI name, instead of or besides API keys.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM certificate chain of the server.
    pub cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) that issue client certificates.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate.
    pub require_client_cert: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl TlsFiles {
    /// None for plaintext; an error names the flag that is missing or unreadable.
    pub fn server_config(&self) -> Result<Option<ServerTlsConfig>, String> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => {
                if self.client_ca.is_some() || self.require_client_cert {
                    return Err("--tls-client-ca and --tls-require-client-cert need --tls-cert and --tls-key".into());
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(cert, "TLS certificate")?, read(key, "TLS private key")?));
        match &self.client_ca {
            Some(ca) => {
                config = config
                    .client_ca_root(Certificate::from_pem(read(ca, "client CA certificate")?))
                    .client_auth_optional(!self.require_client_cert);
            }
            None if self.require_client_cert => {
                return Err("--tls-require-client-cert needs --tls-client-ca".into());
            }
            None => {}
        }
        Ok(Some(config))
    }
}
