//! `tether keys create|list|revoke`.

use clap::{Subcommand, ValueEnum};
use tether_proto::v1::{CreateApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest, Role};

use super::Ctx;
use crate::output::emit;
use crate::views::{ApiKeyView, ApiKeysView, CreateApiKeyView};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; prints the secret once.
    Create {
        /// admin: inventory, tokens, trust, policy, keys; gateway: access
        /// decisions; analyst: reports and "challenge now".
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime (e.g. 90d) [default: the key does not expire].
        #[arg(long, value_name = "DURATION", value_parser = crate::parse::positive_duration_secs)]
        ttl: Option<u64>,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key.
    Revoke {
        /// The key id (not the secret).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Gateway,
    Analyst,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Gateway => Role::Gateway,
            RoleArg::Analyst => Role::Analyst,
        }
    }
}

pub async fn run(ctx: &Ctx, command: KeysCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    match command {
        KeysCommand::Create { role, name, ttl } => {
            let request = CreateApiKeyRequest { name, role: Role::from(role) as i32, ttl_seconds: ttl.unwrap_or(0) };
            let response = admin.create_api_key(request).await?.into_inner();
            emit(ctx.output, &CreateApiKeyView::from(response))?;
        }
        KeysCommand::List => {
            let response = admin.list_api_keys(ListApiKeysRequest {}).await?.into_inner();
            let view = ApiKeysView { keys: response.keys.into_iter().map(Into::into).collect() };
            emit(ctx.output, &view)?;
        }
        KeysCommand::Revoke { id } => {
            let key = admin.revoke_api_key(RevokeApiKeyRequest { id }).await?.into_inner();
            emit(ctx.output, &ApiKeyView::from(key))?;
        }
    }
    Ok(0)
}
