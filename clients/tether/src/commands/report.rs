//! `tether report presence-failures|sessions|flags`.

use clap::{Args, Subcommand, ValueEnum};
use tether_proto::v1::{
    Decision, FlagStatus, ListFlagsRequest, ListPresenceFailuresRequest, ListSessionsRequest, Page, PresenceOutcome,
    TimeRange,
};

use super::{Ctx, check_progress};
use crate::output::emit;
use crate::parse;
use crate::views::{FlagsView, PresenceFailuresView, SessionsView, page_token};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Presence challenges that were missed, failed, replayed, late or looked cloned.
    PresenceFailures {
        #[command(flatten)]
        filter: Filter,
        /// Only these outcomes (comma-separated) [default: every failure].
        #[arg(long, value_enum, value_delimiter = ',', value_name = "OUTCOME,...")]
        outcome: Vec<OutcomeArg>,
    },
    /// Access decisions (one per `gateway check`).
    Sessions {
        #[command(flatten)]
        filter: Filter,
        /// Only this decision.
        #[arg(long, value_enum)]
        decision: Option<DecisionArg>,
    },
    /// Security flags raised by the server.
    Flags {
        #[command(flatten)]
        filter: Filter,
        /// Only flags in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
    },
}

/// Filters and paging shared by every report (results come newest first).
#[derive(Debug, Clone, Args)]
pub struct Filter {
    /// From this time on: RFC 3339, or a duration ago (7d, 12h).
    #[arg(long, value_name = "7d|RFC3339", value_parser = parse::time_bound)]
    pub since: Option<i64>,
    /// Before this time: RFC 3339, or a duration ago.
    #[arg(long, value_name = "RFC3339", value_parser = parse::time_bound)]
    pub until: Option<i64>,
    /// Only this worker (external id).
    #[arg(long, value_name = "EXT")]
    pub worker: Option<String>,
    /// Only this device.
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Page size (server default 50, at most 500).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Continue from a previous page's next_page_token.
    #[arg(long, value_name = "T")]
    pub page_token: Option<String>,
    /// Fetch every page (--limit then sets the page size).
    #[arg(long)]
    pub all: bool,
}

impl Filter {
    fn range(&self) -> anyhow::Result<Option<TimeRange>> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            anyhow::bail!("--since must be before --until");
        }
        if self.since.is_none() && self.until.is_none() {
            return Ok(None);
        }
        Ok(Some(TimeRange { since_ms: self.since.unwrap_or(0), until_ms: self.until.unwrap_or(0) }))
    }

    fn page(&self, token: &str) -> Option<Page> {
        if self.limit.is_none() && token.is_empty() {
            return None;
        }
        Some(Page { page_size: self.limit.unwrap_or(0), page_token: token.to_string() })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    Missed,
    Failed,
    Replayed,
    Late,
    #[value(alias = "clone_suspected")]
    CloneSuspected,
}

impl From<OutcomeArg> for PresenceOutcome {
    fn from(outcome: OutcomeArg) -> Self {
        match outcome {
            OutcomeArg::Missed => PresenceOutcome::Missed,
            OutcomeArg::Failed => PresenceOutcome::Failed,
            OutcomeArg::Replayed => PresenceOutcome::Replayed,
            OutcomeArg::Late => PresenceOutcome::Late,
            OutcomeArg::CloneSuspected => PresenceOutcome::CloneSuspected,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
}

impl From<DecisionArg> for Decision {
    fn from(decision: DecisionArg) -> Self {
        match decision {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Deny => Decision::Deny,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Open,
    Acknowledged,
    Resolved,
}

impl From<StatusArg> for FlagStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Open => FlagStatus::Open,
            StatusArg::Acknowledged => FlagStatus::Acknowledged,
            StatusArg::Resolved => FlagStatus::Resolved,
        }
    }
}

/// The request for one page of each report.
pub fn presence_failures_request(
    filter: &Filter,
    outcomes: &[OutcomeArg],
    token: &str,
) -> anyhow::Result<ListPresenceFailuresRequest> {
    Ok(ListPresenceFailuresRequest {
        range: filter.range()?,
        worker_external_id: filter.worker.clone().unwrap_or_default(),
        device_id: filter.device.clone().unwrap_or_default(),
        outcomes: outcomes.iter().map(|o| PresenceOutcome::from(*o) as i32).collect(),
        page: filter.page(token),
    })
}

pub fn sessions_request(
    filter: &Filter,
    decision: Option<DecisionArg>,
    token: &str,
) -> anyhow::Result<ListSessionsRequest> {
    Ok(ListSessionsRequest {
        range: filter.range()?,
        worker_external_id: filter.worker.clone().unwrap_or_default(),
        device_id: filter.device.clone().unwrap_or_default(),
        decision: decision.map(Decision::from).unwrap_or(Decision::Unspecified) as i32,
        page: filter.page(token),
    })
}

pub fn flags_request(filter: &Filter, status: Option<StatusArg>, token: &str) -> anyhow::Result<ListFlagsRequest> {
    Ok(ListFlagsRequest {
        range: filter.range()?,
        worker_external_id: filter.worker.clone().unwrap_or_default(),
        device_id: filter.device.clone().unwrap_or_default(),
        status: status.map(FlagStatus::from).unwrap_or(FlagStatus::Unspecified) as i32,
        page: filter.page(token),
    })
}

pub async fn run(ctx: &Ctx, command: ReportCommand) -> anyhow::Result<i32> {
    let (ReportCommand::PresenceFailures { filter, .. }
    | ReportCommand::Sessions { filter, .. }
    | ReportCommand::Flags { filter, .. }) = &command;
    // Check the arguments before connecting.
    filter.range()?;
    let mut reports = ctx.report().await?;
    match command {
        ReportCommand::PresenceFailures { filter, outcome } => {
            let mut token = filter.page_token.clone().unwrap_or_default();
            let mut events = Vec::new();
            let next = loop {
                let request = presence_failures_request(&filter, &outcome, &token)?;
                let response = reports.list_presence_failures(request).await?.into_inner();
                events.extend(response.events.into_iter().map(Into::into));
                check_progress(&token, &response.next_page_token)?;
                if !filter.all || response.next_page_token.is_empty() {
                    break response.next_page_token;
                }
                token = response.next_page_token;
            };
            let view = PresenceFailuresView { events, next_page_token: page_token(next) };
            emit(ctx.output, &view)?;
        }
        ReportCommand::Sessions { filter, decision } => {
            let mut token = filter.page_token.clone().unwrap_or_default();
            let mut sessions = Vec::new();
            let next = loop {
                let request = sessions_request(&filter, decision, &token)?;
                let response = reports.list_sessions(request).await?.into_inner();
                sessions.extend(response.sessions.into_iter().map(Into::into));
                check_progress(&token, &response.next_page_token)?;
                if !filter.all || response.next_page_token.is_empty() {
                    break response.next_page_token;
                }
                token = response.next_page_token;
            };
            let view = SessionsView { sessions, next_page_token: page_token(next) };
            emit(ctx.output, &view)?;
        }
        ReportCommand::Flags { filter, status } => {
            let mut token = filter.page_token.clone().unwrap_or_default();
            let mut flags = Vec::new();
            let next = loop {
                let request = flags_request(&filter, status, &token)?;
                let response = reports.list_flags(request).await?.into_inner();
                flags.extend(response.flags.into_iter().map(Into::into));
                check_progress(&token, &response.next_page_token)?;
                if !filter.all || response.next_page_token.is_empty() {
                    break response.next_page_token;
                }
                token = response.next_page_token;
            };
            let view = FlagsView { flags, next_page_token: page_token(next) };
            emit(ctx.output, &view)?;
        }
    }
    Ok(0)
}
