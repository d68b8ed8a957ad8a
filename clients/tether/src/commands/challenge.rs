//! `tether challenge DEVICE_ID`: issue a presence challenge now.

use clap::Args;
use tether_proto::v1::ChallengeNowRequest;

use super::Ctx;
use crate::output::emit;
use crate::parse;
use crate::views::ChallengeNowView;

#[derive(Debug, Args)]
pub struct ChallengeArgs {
    pub device_id: String,
    /// Time to answer [default: the policy's challenge deadline].
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration_secs)]
    pub deadline: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: ChallengeArgs) -> anyhow::Result<i32> {
    let request = ChallengeNowRequest { device_id: args.device_id, deadline_seconds: args.deadline.unwrap_or(0) };
    let response = ctx.admin().await?.challenge_now(request).await?.into_inner();
    emit(ctx.output, &ChallengeNowView { challenge_ids: response.challenge_ids })?;
    Ok(0)
}
