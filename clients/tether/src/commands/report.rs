//! `tether report flags|failures|sessions|timeline|summary`: tables for
//! people, `--output json` (one document) or `--output csv` (a header row,
//! then one row per item) for pipelines.

mod csv;

use clap::{Args, Subcommand, ValueEnum};
use tether_proto::v1::{
    Decision, FlagSeverity, FlagStatus, GetDeviceTimelineRequest, GetSummaryRequest, ListFlagsRequest,
    ListPresenceFailuresRequest, ListSessionsRequest, Page, PresenceOutcome, TimeRange,
};

use super::{Ctx, check_progress};
use crate::output::{OutputFormat, Render, emit};
use crate::parse;
use crate::views::{FlagsView, PresenceFailuresView, SessionsView, SummaryView, TimelineView, page_token};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Presence challenges that were missed, failed, replayed, late or looked cloned.
    #[command(visible_alias = "presence-failures")]
    Failures {
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
        /// Only would-deny sessions: allowed in monitor mode despite a tier denial.
        #[arg(long)]
        would_deny: bool,
    },
    /// Security flags raised by the server.
    Flags {
        #[command(flatten)]
        filter: Filter,
        /// Only flags in these states (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', value_name = "STATUS,...")]
        status: Vec<StatusArg>,
        /// Only these kinds (comma-separated), e.g. shared_egress,clone_suspected.
        #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
        kind: Vec<String>,
        /// Only these severities (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', value_name = "SEVERITY,...")]
        severity: Vec<SeverityArg>,
    },
    /// Everything about one device, newest first, and the addresses it was seen from.
    Timeline {
        /// The device id (dev_...).
        device: String,
        #[command(flatten)]
        page: TimelineArgs,
    },
    /// A period at a glance: flags by kind and severity, shared-egress clusters,
    /// devices with repeated presence failures.
    Summary {
        /// From this time on: RFC 3339, or a duration ago (7d, 12h).
        #[arg(long, value_name = "7d|RFC3339", value_parser = parse::time_bound)]
        since: i64,
        /// Before this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "RFC3339", value_parser = parse::time_bound)]
        until: Option<i64>,
        /// How many clusters to list (1-100, server default 10).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
        top: Option<u32>,
        /// Devices with at least this many failures (server default 2).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        min_failures: Option<u32>,
    },
}

/// Time range and paging of `report timeline`.
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    /// From this time on: RFC 3339, or a duration ago (7d, 12h).
    #[arg(long, value_name = "7d|RFC3339", value_parser = parse::time_bound)]
    pub since: Option<i64>,
    /// Before this time: RFC 3339, or a duration ago.
    #[arg(long, value_name = "RFC3339", value_parser = parse::time_bound)]
    pub until: Option<i64>,
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
        range(self.since, self.until)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    Info,
    Review,
    High,
}

impl From<SeverityArg> for FlagSeverity {
    fn from(severity: SeverityArg) -> Self {
        match severity {
            SeverityArg::Info => FlagSeverity::Info,
            SeverityArg::Review => FlagSeverity::Review,
            SeverityArg::High => FlagSeverity::High,
        }
    }
}

fn range(since: Option<i64>, until: Option<i64>) -> anyhow::Result<Option<TimeRange>> {
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        anyhow::bail!("--since must be before --until");
    }
    if since.is_none() && until.is_none() {
        return Ok(None);
    }
    Ok(Some(TimeRange { since_ms: since.unwrap_or(0), until_ms: until.unwrap_or(0) }))
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
    would_deny_only: bool,
    token: &str,
) -> anyhow::Result<ListSessionsRequest> {
    Ok(ListSessionsRequest {
        range: filter.range()?,
        worker_external_id: filter.worker.clone().unwrap_or_default(),
        device_id: filter.device.clone().unwrap_or_default(),
        decision: decision.map(Decision::from).unwrap_or(Decision::Unspecified) as i32,
        page: filter.page(token),
        would_deny_only,
    })
}

pub fn flags_request(
    filter: &Filter,
    status: &[StatusArg],
    kinds: &[String],
    severities: &[SeverityArg],
    token: &str,
) -> anyhow::Result<ListFlagsRequest> {
    // One status travels in the original field, so older servers still filter.
    let (single, several) = match status {
        [one] => (FlagStatus::from(*one), Vec::new()),
        many => (FlagStatus::Unspecified, many.iter().map(|s| FlagStatus::from(*s) as i32).collect()),
    };
    Ok(ListFlagsRequest {
        range: filter.range()?,
        worker_external_id: filter.worker.clone().unwrap_or_default(),
        device_id: filter.device.clone().unwrap_or_default(),
        status: single as i32,
        page: filter.page(token),
        kinds: kinds.iter().map(|k| k.trim().to_string()).collect(),
        severities: severities.iter().map(|s| FlagSeverity::from(*s) as i32).collect(),
        statuses: several,
    })
}

/// Prints a view in the chosen format; `csv` renders the rows given.
fn print<T: Render>(format: OutputFormat, view: &T, csv: impl FnOnce(&T) -> String) -> anyhow::Result<()> {
    match format {
        OutputFormat::Csv => print!("{}", csv(view)),
        other => emit(other, view)?,
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, command: ReportCommand) -> anyhow::Result<i32> {
    // Check the arguments before connecting.
    match &command {
        ReportCommand::Failures { filter, .. }
        | ReportCommand::Sessions { filter, .. }
        | ReportCommand::Flags { filter, .. } => {
            filter.range()?;
        }
        ReportCommand::Timeline { page, .. } => {
            range(page.since, page.until)?;
        }
        ReportCommand::Summary { since, until, .. } => {
            range(Some(*since), *until)?;
        }
    }
    let mut reports = ctx.report().await?;
    match command {
        ReportCommand::Failures { filter, outcome } => {
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
            print(ctx.output, &view, |v| csv::failures(&v.events))?;
        }
        ReportCommand::Sessions { filter, decision, would_deny } => {
            let mut token = filter.page_token.clone().unwrap_or_default();
            let mut sessions = Vec::new();
            let next = loop {
                let request = sessions_request(&filter, decision, would_deny, &token)?;
                let response = reports.list_sessions(request).await?.into_inner();
                sessions.extend(response.sessions.into_iter().map(Into::into));
                check_progress(&token, &response.next_page_token)?;
                if !filter.all || response.next_page_token.is_empty() {
                    break response.next_page_token;
                }
                token = response.next_page_token;
            };
            let view = SessionsView { sessions, next_page_token: page_token(next) };
            print(ctx.output, &view, |v| csv::sessions(&v.sessions))?;
        }
        ReportCommand::Flags { filter, status, kind, severity } => {
            let mut token = filter.page_token.clone().unwrap_or_default();
            let mut flags = Vec::new();
            let next = loop {
                let request = flags_request(&filter, &status, &kind, &severity, &token)?;
                let response = reports.list_flags(request).await?.into_inner();
                flags.extend(response.flags.into_iter().map(Into::into));
                check_progress(&token, &response.next_page_token)?;
                if !filter.all || response.next_page_token.is_empty() {
                    break response.next_page_token;
                }
                token = response.next_page_token;
            };
            let view = FlagsView { flags, next_page_token: page_token(next) };
            print(ctx.output, &view, |v| csv::flags(&v.flags))?;
        }
        ReportCommand::Timeline { device, page } => {
            let request = |token: &str| -> anyhow::Result<GetDeviceTimelineRequest> {
                Ok(GetDeviceTimelineRequest {
                    device_id: device.clone(),
                    range: range(page.since, page.until)?,
                    page: (page.limit.is_some() || !token.is_empty())
                        .then(|| Page { page_size: page.limit.unwrap_or(0), page_token: token.to_string() }),
                })
            };
            let mut token = page.page_token.clone().unwrap_or_default();
            let first = reports.get_device_timeline(request(&token)?).await?.into_inner();
            let mut view = TimelineView::new(first);
            while page.all
                && let Some(next) = view.next_page_token.take()
            {
                check_progress(&token, &next)?;
                token = next;
                let response = reports.get_device_timeline(request(&token)?).await?.into_inner();
                view.entries.extend(response.entries.into_iter().map(Into::into));
                view.next_page_token = page_token(response.next_page_token);
            }
            print(ctx.output, &view, |v| csv::timeline(&v.entries))?;
        }
        ReportCommand::Summary { since, until, top, min_failures } => {
            let request = GetSummaryRequest {
                range: range(Some(since), until)?,
                top_clusters: top.unwrap_or(0),
                min_failures: min_failures.unwrap_or(0),
            };
            let view = SummaryView::from(reports.get_summary(request).await?.into_inner());
            print(ctx.output, &view, csv::summary)?;
        }
    }
    Ok(0)
}
