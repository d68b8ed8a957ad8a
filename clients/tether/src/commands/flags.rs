//! `tether flags acknowledge|resolve|reopen FLAG_ID --note TEXT`: an
//! analyst's review of a flag. Every change is written to the audit log.

use clap::{Args, Subcommand};
use tether_proto::v1::{FlagStatus, UpdateFlagRequest};

use super::Ctx;
use crate::output::emit;
use crate::views::FlagView;

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Mark a flag as seen and being investigated (a high flag still denies access).
    Acknowledge(Review),
    /// Close a flag (a resolved high flag no longer denies access).
    Resolve(Review),
    /// Open a flag again.
    Reopen(Review),
}

#[derive(Debug, Args)]
pub struct Review {
    pub flag_id: String,
    /// Why (required; kept with the flag and in the audit log).
    #[arg(long)]
    pub note: String,
}

pub async fn run(ctx: &Ctx, command: FlagsCommand) -> anyhow::Result<i32> {
    let (status, review) = match command {
        FlagsCommand::Acknowledge(r) => (FlagStatus::Acknowledged, r),
        FlagsCommand::Resolve(r) => (FlagStatus::Resolved, r),
        FlagsCommand::Reopen(r) => (FlagStatus::Open, r),
    };
    let request = UpdateFlagRequest { flag_id: review.flag_id, status: status as i32, note: review.note };
    let flag = ctx.report().await?.update_flag(request).await?.into_inner();
    emit(ctx.output, &FlagView::from(flag))?;
    Ok(0)
}
