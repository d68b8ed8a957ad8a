//! `tether credentials revoke`.

use clap::Subcommand;
use tether_proto::v1::RevokeCredentialRequest;

use super::Ctx;
use crate::output::emit;
use crate::views::CredentialView;

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Revoke one credential (the device stays; it can enroll again).
    Revoke {
        /// base64url credential id.
        credential_id: String,
        /// Why (recorded with the revocation).
        #[arg(long, value_name = "R", default_value = "")]
        reason: String,
    },
}

pub async fn run(ctx: &Ctx, command: CredentialsCommand) -> anyhow::Result<i32> {
    match command {
        CredentialsCommand::Revoke { credential_id, reason } => {
            let request = RevokeCredentialRequest { credential_id, reason };
            let credential = ctx.admin().await?.revoke_credential(request).await?.into_inner();
            emit(ctx.output, &CredentialView::from(credential))?;
        }
    }
    Ok(0)
}
