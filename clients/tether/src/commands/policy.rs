//! `tether policy show|set`, and `tether policy pcr …` (PCR policy for TPM devices).

pub mod pcr;

use clap::{ArgGroup, Args, Subcommand};
use tether_proto::v1::{GetPolicyRequest, UpdatePolicyRequest};

use super::Ctx;
use crate::output::emit;
use crate::parse;
use crate::views::PolicyView;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the tenant's policy.
    Show,
    /// Change some of the policy; options not given keep their value.
    Set(PolicySetArgs),
    /// Expected PCR values for TPM devices, per model or per device.
    #[command(subcommand)]
    Pcr(pcr::PcrCommand),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)))]
pub struct PolicySetArgs {
    /// WebAuthn relying party id (a domain).
    #[arg(long, value_name = "ID", group = "change")]
    pub rp_id: Option<String>,
    /// The origin agents present in clientDataJSON.
    #[arg(long, value_name = "URL", group = "change")]
    pub origin: Option<String>,
    /// Whether self/none-attested or untrusted-root credentials may enroll.
    #[arg(long, value_name = "true|false", group = "change")]
    pub allow_unattested: Option<bool>,
    /// Only these authenticator models count as attested; `none` clears the list.
    #[arg(long, value_name = "UUID,UUID|none", value_parser = parse::aaguid_list, group = "change")]
    pub allowed_aaguids: Option<parse::AaguidList>,
    /// Time between scheduled presence challenges per device.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub presence_interval: Option<u64>,
    /// Time a device has to answer a challenge.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub challenge_deadline: Option<u64>,
    /// A successful presence answer older than this denies access.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs, group = "change")]
    pub presence_window: Option<u64>,
}

impl PolicySetArgs {
    pub fn to_request(&self) -> UpdatePolicyRequest {
        UpdatePolicyRequest {
            rp_id: self.rp_id.clone(),
            origin: self.origin.clone(),
            allow_unattested: self.allow_unattested,
            set_allowed_aaguids: self.allowed_aaguids.is_some(),
            allowed_aaguids: self.allowed_aaguids.as_ref().map(|list| list.0.clone()).unwrap_or_default(),
            presence_interval_seconds: self.presence_interval,
            challenge_deadline_seconds: self.challenge_deadline,
            presence_window_seconds: self.presence_window,
        }
    }
}

pub async fn run(ctx: &Ctx, command: PolicyCommand) -> anyhow::Result<i32> {
    let policy = match command {
        PolicyCommand::Show => ctx.admin().await?.get_policy(GetPolicyRequest {}).await?.into_inner(),
        PolicyCommand::Set(args) => ctx.admin().await?.update_policy(args.to_request()).await?.into_inner(),
        PolicyCommand::Pcr(command) => return pcr::run(ctx, command).await,
    };
    emit(ctx.output, &PolicyView::from(policy))?;
    Ok(0)
}
