//! `tether tokens create|list|revoke`.

use clap::Subcommand;
use tether_proto::v1::{CreateEnrollmentTokenRequest, ListEnrollmentTokensRequest, RevokeEnrollmentTokenRequest};

use super::Ctx;
use crate::output::emit;
use crate::parse;
use crate::views::{CreateEnrollmentTokenView, EnrollmentTokenView, EnrollmentTokensView};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a one-time enrollment token for a device; prints the secret once.
    Create {
        #[arg(long = "device", value_name = "DEVICE_ID")]
        device_id: String,
        /// Lifetime (at most 30d) [default: the server's, 24h].
        #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs)]
        ttl: Option<u64>,
    },
    /// List a device's enrollment tokens.
    List {
        #[arg(long = "device", value_name = "DEVICE_ID")]
        device_id: String,
    },
    /// Revoke an unused enrollment token.
    Revoke { token_id: String },
}

pub async fn run(ctx: &Ctx, command: TokensCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    match command {
        TokensCommand::Create { device_id, ttl } => {
            let request = CreateEnrollmentTokenRequest { device_id, ttl_seconds: ttl.unwrap_or(0) };
            let response = admin.create_enrollment_token(request).await?.into_inner();
            emit(ctx.output, &CreateEnrollmentTokenView::from(response))?;
        }
        TokensCommand::List { device_id } => {
            let response = admin.list_enrollment_tokens(ListEnrollmentTokensRequest { device_id }).await?.into_inner();
            let view = EnrollmentTokensView { tokens: response.tokens.into_iter().map(Into::into).collect() };
            emit(ctx.output, &view)?;
        }
        TokensCommand::Revoke { token_id } => {
            let token =
                admin.revoke_enrollment_token(RevokeEnrollmentTokenRequest { id: token_id }).await?.into_inner();
            emit(ctx.output, &EnrollmentTokenView::from(token))?;
        }
    }
    Ok(0)
}
