//! `tether trust add|list|remove|import-mds|mds-status`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tether_proto::v1::{
    AddTrustAnchorsRequest, GetMdsStatusRequest, ImportMdsChunk, ListTrustAnchorsRequest, RemoveTrustAnchorRequest,
};

use super::Ctx;
use crate::output::emit;
use crate::views::{MdsImportView, MdsStatusesView, TrustAnchorView, TrustAnchorsView};

/// Certificate bundles shipped with tether.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Bundle {
    /// The TPM manufacturers' EK CA certificates (attestation/bundles/tpm, with a manifest).
    Tpm,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust the attestation root certificate(s) in a PEM file, or a bundle shipped with tether.
    Add {
        /// One or more PEM CERTIFICATE blocks.
        #[arg(value_name = "FILE.pem", required_unless_present = "bundle", conflicts_with = "bundle")]
        file: Option<PathBuf>,
        /// A bundle shipped with tether instead of a file: `tpm` (TPM manufacturers' EK CAs).
        #[arg(long, value_enum)]
        bundle: Option<Bundle>,
        /// With --bundle tpm: only this manufacturer (amd, ifx, intc, msft, ntc, stm).
        #[arg(long, requires = "bundle")]
        vendor: Option<String>,
        /// A label for the anchor(s). Default for a bundle: "TPM bundle" and the vendor.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List trust anchors.
    List,
    /// Stop trusting an anchor.
    Remove { id: String },
    /// Import a FIDO metadata BLOB (MDS3, as downloaded) for this tenant's enrollments: the
    /// server verifies it against its MDS roots, refuses models it marks compromised or revoked
    /// and trusts each model's roots for that model only. Its `no` must not go backwards.
    ImportMds {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show the FIDO metadata in force: the operator's (every tenant) and this tenant's.
    MdsStatus,
}

/// Bytes per upload message; the server takes at most 1 MiB per message.
const MDS_CHUNK_BYTES: usize = 512 * 1024;

pub async fn run(ctx: &Ctx, command: TrustCommand) -> anyhow::Result<i32> {
    match command {
        TrustCommand::Add { file, bundle, vendor, name } => {
            let (pem, name) = match (bundle, file) {
                (Some(Bundle::Tpm), _) => bundle_pem(vendor.as_deref(), name)?,
                (None, Some(file)) => (read_pem(&file)?, name),
                (None, None) => anyhow::bail!("name a PEM file or --bundle tpm"),
            };
            let response =
                ctx.admin().await?.add_trust_anchors(AddTrustAnchorsRequest { pem, name }).await?.into_inner();
            emit(ctx.output, &TrustAnchorsView { anchors: response.anchors.into_iter().map(Into::into).collect() })?;
        }
        TrustCommand::List => {
            let response = ctx.admin().await?.list_trust_anchors(ListTrustAnchorsRequest {}).await?.into_inner();
            emit(ctx.output, &TrustAnchorsView { anchors: response.anchors.into_iter().map(Into::into).collect() })?;
        }
        TrustCommand::Remove { id } => {
            let anchor = ctx.admin().await?.remove_trust_anchor(RemoveTrustAnchorRequest { id }).await?.into_inner();
            emit(ctx.output, &TrustAnchorView::from(anchor))?;
        }
        TrustCommand::ImportMds { file } => {
            let blob = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let chunks: Vec<ImportMdsChunk> =
                blob.chunks(MDS_CHUNK_BYTES).map(|c| ImportMdsChunk { data: c.to_vec() }).collect();
            let response = ctx.admin().await?.import_mds(tokio_stream::iter(chunks)).await?.into_inner();
            emit(ctx.output, &MdsImportView::from(response))?;
        }
        TrustCommand::MdsStatus => {
            let response = ctx.admin().await?.get_mds_status(GetMdsStatusRequest {}).await?.into_inner();
            emit(ctx.output, &MdsStatusesView::from(response))?;
        }
    }
    Ok(0)
}

/// The shipped TPM bundle (or one vendor of it) and the label its anchors get.
fn bundle_pem(vendor: Option<&str>, name: String) -> anyhow::Result<(String, String)> {
    let pem = tether_attestation::tpm::bundle::pem(vendor).map_err(anyhow::Error::msg)?;
    let name = match (name.is_empty(), vendor) {
        (false, _) => name,
        (true, Some(vendor)) => format!("TPM bundle: {vendor}"),
        (true, None) => "TPM bundle".to_owned(),
    };
    Ok((pem, name))
}

/// Read a PEM file, refusing anything without a CERTIFICATE block before
/// bothering the server (a private key pasted by mistake stays local).
pub fn read_pem(file: &PathBuf) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("{} contains no PEM CERTIFICATE block", file.display());
    }
    if pem.contains("PRIVATE KEY-----") {
        anyhow::bail!("{} contains a private key; trust anchors are certificates only", file.display());
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_checked_locally() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("root.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(read_pem(&cert).is_ok());
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pem(&key).unwrap_err().to_string().contains("private key"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(read_pem(&empty).is_err());
        assert!(read_pem(&dir.path().join("missing.pem")).is_err());
    }

    #[test]
    fn the_tpm_bundle_is_offered_whole_or_per_vendor() {
        let (all, name) = bundle_pem(None, String::new()).unwrap();
        assert_eq!(name, "TPM bundle");
        let (stm, name) = bundle_pem(Some("stm"), String::new()).unwrap();
        assert_eq!(name, "TPM bundle: stm");
        assert!(stm.len() < all.len() && all.contains(&stm[..200]));
        assert_eq!(bundle_pem(Some("ifx"), "mine".into()).unwrap().1, "mine");
        assert!(bundle_pem(Some("acme"), String::new()).unwrap_err().to_string().contains("unknown TPM vendor"));
    }
}
