//! `tether trust add|list|remove`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tether_proto::v1::{AddTrustAnchorsRequest, ListTrustAnchorsRequest, RemoveTrustAnchorRequest};

use super::Ctx;
use crate::output::emit;
use crate::views::{TrustAnchorView, TrustAnchorsView};

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust the attestation root certificate(s) in a PEM file.
    Add {
        /// One or more PEM CERTIFICATE blocks.
        #[arg(value_name = "FILE.pem")]
        file: PathBuf,
        /// A label for the anchor(s).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List trust anchors.
    List,
    /// Stop trusting an anchor.
    Remove { id: String },
}

pub async fn run(ctx: &Ctx, command: TrustCommand) -> anyhow::Result<i32> {
    match command {
        TrustCommand::Add { file, name } => {
            let pem = read_pem(&file)?;
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
    }
    Ok(0)
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
}
