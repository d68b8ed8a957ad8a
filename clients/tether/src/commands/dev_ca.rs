//! `tether dev-ca --dir DIR`: a throwaway attestation PKI for the software
//! authenticator. Offline; never for production tenants.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tether_softkey::pki::TestPki;

use crate::output::{Fields, OutputFormat, Render, emit};

#[derive(Debug, Args)]
pub struct DevCaArgs {
    /// Where to write root.pem, vendor-ca.pem and vendor-ca.key (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Organization name in the certificates.
    #[arg(long, value_name = "ORG", default_value = "Tether Dev Authenticators")]
    pub org: String,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

pub const ROOT_CERT: &str = "root.pem";
pub const VENDOR_CERT: &str = "vendor-ca.pem";
pub const VENDOR_KEY: &str = "vendor-ca.key";

#[derive(Debug, Serialize)]
pub struct DevCaView {
    /// Give to `tether trust add`.
    pub root_cert: String,
    /// Give to `tether-agent enroll --attestation-ca-cert`.
    pub vendor_ca_cert: String,
    /// Give to `tether-agent enroll --attestation-ca-key` (mode 0600).
    pub vendor_ca_key: String,
}

impl Render for DevCaView {
    fn to_text(&self) -> String {
        let mut out = Fields::new()
            .add("trust anchor (tether trust add)", &self.root_cert)
            .add("agent CA certificate", &self.vendor_ca_cert)
            .add("agent CA key", &self.vendor_ca_key)
            .render();
        out.push_str("\nA development PKI for the software authenticator: never trust it in production.\n");
        out
    }
}

pub fn run(output: OutputFormat, args: DevCaArgs) -> anyhow::Result<i32> {
    let view = write_dev_ca(&args.dir, &args.org, args.force)?;
    emit(output, &view)?;
    Ok(0)
}

/// Generate the PKI and write its three files into `dir`.
pub fn write_dev_ca(dir: &Path, org: &str, force: bool) -> anyhow::Result<DevCaView> {
    let paths = [dir.join(ROOT_CERT), dir.join(VENDOR_CERT), dir.join(VENDOR_KEY)];
    if !force && let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!("{} already exists; pass --force to replace it", existing.display());
    }
    let pki = TestPki::generate(org).map_err(|e| anyhow::anyhow!("cannot generate the PKI: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let [root, vendor_cert, vendor_key] = paths;
    write_file(&root, &pki.root_cert_pem, false)?;
    write_file(&vendor_cert, &pki.intermediate_cert_pem, false)?;
    write_file(&vendor_key, &pki.intermediate_key_pem, true)?;
    Ok(DevCaView {
        root_cert: root.display().to_string(),
        vendor_ca_cert: vendor_cert.display().to_string(),
        vendor_ca_key: vendor_key.display().to_string(),
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if private { 0o600 } else { 0o644 });
        let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        // An existing file keeps its old mode on open: set it explicitly.
        if private {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
        file.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_usable_pki_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dev-ca");
        let view = write_dev_ca(&target, "Test Org", false).unwrap();
        let root = std::fs::read_to_string(&view.root_cert).unwrap();
        assert!(root.contains("BEGIN CERTIFICATE"));
        let key = std::fs::read_to_string(&view.vendor_ca_key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        // The soft authenticator accepts the pair.
        let mode = tether_softkey::AttestationMode::Packed {
            ca_cert_pem: std::fs::read_to_string(&view.vendor_ca_cert).unwrap(),
            ca_key_pem: key,
        };
        assert!(tether_softkey::SoftAuthenticator::new(mode, uuid::Uuid::nil()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&view.vendor_ca_key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = write_dev_ca(&target, "Test Org", false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        assert!(write_dev_ca(&target, "Test Org", true).is_ok());
    }
}
