//! `tether gateway check`: the access decision, as an exit code.
//!
//! 0 = ALLOW, 1 = DENY, 2 = anything else (usage, transport, auth, or a
//! response without a decision), so a script gating access fails closed.

use clap::{ArgGroup, Args, Subcommand};
use tether_proto::v1::{CheckAccessRequest, Decision};

use super::Ctx;
use crate::output::emit;
use crate::views::CheckAccessView;

pub const EXIT_ALLOW: i32 = 0;
pub const EXIT_DENY: i32 = 1;

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Ask whether a worker may connect: exit 0 = ALLOW, 1 = DENY, 2 = error.
    Check(CheckArgs),
    /// OpenVPN `auth-user-pass-verify CMD via-file`: exit 0 admits, 1 refuses (the log line says why).
    OpenvpnVerify(super::openvpn::VerifyArgs),
    /// OpenVPN `client-connect CMD`: exit 0 admits, 1 refuses (the log line says why).
    OpenvpnConnect(super::openvpn::ConnectArgs),
    /// Fetch the public keys that verify access tokens (JSON key set for verify-token).
    TokenKeys(super::token_keys::TokenKeysArgs),
    /// Verify an access token offline: exit 0 valid (claims JSON), 1 invalid (reason), 2 unusable input.
    VerifyToken(super::token_keys::VerifyTokenArgs),
    /// Create an access-token signing key for tetherd --access-token-key (PKCS#8 PEM, mode 0600).
    NewTokenKey(super::token_keys::NewTokenKeyArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("device_or_credential").required(true).multiple(false)))]
pub struct CheckArgs {
    /// The worker's external id.
    #[arg(long, value_name = "EXT")]
    pub worker: String,
    /// The device id.
    #[arg(long, value_name = "ID", group = "device_or_credential")]
    pub device: Option<String>,
    /// The base64url credential id (instead of --device).
    #[arg(long, value_name = "CID", group = "device_or_credential")]
    pub credential: Option<String>,
    /// The client's address as the gateway sees it.
    #[arg(long, value_name = "IP")]
    pub source_ip: String,
    /// This gateway's id (recorded with the session).
    #[arg(long, value_name = "G")]
    pub gateway: String,
}

impl CheckArgs {
    pub fn to_request(&self) -> CheckAccessRequest {
        CheckAccessRequest {
            worker_external_id: self.worker.clone(),
            device_id: self.device.clone().unwrap_or_default(),
            credential_id: self.credential.clone().unwrap_or_default(),
            source_ip: self.source_ip.clone(),
            gateway_id: self.gateway.clone(),
            ..Default::default()
        }
    }
}

pub async fn run(ctx: &Ctx, command: GatewayCommand) -> anyhow::Result<i32> {
    let args = match command {
        GatewayCommand::Check(args) => args,
        GatewayCommand::OpenvpnVerify(args) => return Ok(super::openvpn::verify(ctx, args).await),
        GatewayCommand::OpenvpnConnect(args) => return Ok(super::openvpn::connect(ctx, args).await),
        GatewayCommand::TokenKeys(args) => return super::token_keys::token_keys(ctx, args).await,
        GatewayCommand::VerifyToken(args) => return Ok(super::token_keys::verify_token(&args)),
        GatewayCommand::NewTokenKey(args) => return super::token_keys::new_token_key(&args),
    };
    let response = ctx.access().await?.check_access(args.to_request()).await?.into_inner();
    // Unknown values read as UNSPECIFIED: only an explicit ALLOW allows.
    let decision = response.decision();
    emit(ctx.output, &CheckAccessView::from(response))?;
    match decision {
        Decision::Allow => Ok(EXIT_ALLOW),
        Decision::Deny => Ok(EXIT_DENY),
        Decision::Unspecified => {
            anyhow::bail!("the server returned no decision; treating it as an error")
        }
    }
}
