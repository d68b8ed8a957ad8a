//! `tether workers add|upsert|list`.

use clap::{Args, Subcommand};
use tether_proto::v1::{ListWorkersRequest, Page, UpsertWorkerRequest, WorkerHome, WorkingHours};

use super::{Ctx, MAX_PAGE_SIZE, check_progress};
use crate::output::emit;
use crate::views::{WorkerView, WorkersView};

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Add a worker, or rename an existing one.
    Add {
        /// The employer's id for the worker (HR or IdP id).
        #[arg(long = "id", value_name = "EXT")]
        external_id: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Create or update a worker, with the home and working hours the risk
    /// engine measures against (`relocated`, `presence_missed_pattern`, `home_collision`).
    Upsert(UpsertArgs),
    /// List all workers.
    List,
}

#[derive(Debug, Args)]
pub struct UpsertArgs {
    /// The employer's id for the worker (HR or IdP id).
    #[arg(long = "id", value_name = "EXT")]
    pub external_id: String,
    /// Display name (an existing worker keeps its name when omitted).
    #[arg(long)]
    pub name: Option<String>,
    /// Home latitude in degrees (with --home-lon).
    #[arg(long, value_name = "DEG", requires = "home_lon", allow_hyphen_values = true)]
    pub home_lat: Option<f64>,
    /// Home longitude in degrees (with --home-lat).
    #[arg(long, value_name = "DEG", requires = "home_lat", allow_hyphen_values = true)]
    pub home_lon: Option<f64>,
    /// Home country, ISO 3166-1 alpha-2 (DE, US, ...).
    #[arg(long, value_name = "CC", requires = "home_lat")]
    pub home_country: Option<String>,
    /// Working hours: days and a local time range, e.g. "Mon-Fri 09:00-17:00" (with --timezone).
    #[arg(long, value_name = "SCHEDULE", requires = "timezone")]
    pub working_hours: Option<String>,
    /// Time zone of the working hours: an IANA name (Europe/Berlin) or an offset (+05:30, UTC).
    #[arg(long, value_name = "TZ", requires = "working_hours", allow_hyphen_values = true)]
    pub timezone: Option<String>,
    /// Remove the declared home.
    #[arg(long, conflicts_with = "home_lat")]
    pub clear_home: bool,
    /// Remove the declared working hours.
    #[arg(long, conflicts_with = "working_hours")]
    pub clear_working_hours: bool,
}

impl UpsertArgs {
    fn request(self) -> UpsertWorkerRequest {
        UpsertWorkerRequest {
            external_id: self.external_id,
            display_name: self.name.unwrap_or_default(),
            home: match (self.home_lat, self.home_lon) {
                (Some(lat), Some(lon)) => Some(WorkerHome { lat, lon, country: self.home_country.unwrap_or_default() }),
                _ => None,
            },
            working_hours: self
                .working_hours
                .map(|schedule| WorkingHours { schedule, timezone: self.timezone.unwrap_or_default() }),
            clear_home: self.clear_home,
            clear_working_hours: self.clear_working_hours,
        }
    }
}

pub async fn run(ctx: &Ctx, command: WorkersCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    match command {
        WorkersCommand::Add { external_id, name } => {
            let request = UpsertWorkerRequest { external_id, display_name: name, ..Default::default() };
            let worker = admin.upsert_worker(request).await?.into_inner();
            emit(ctx.output, &WorkerView::from(worker))?;
        }
        WorkersCommand::Upsert(args) => {
            let worker = admin.upsert_worker(args.request()).await?.into_inner();
            emit(ctx.output, &WorkerView::from(worker))?;
        }
        WorkersCommand::List => {
            let mut workers = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListWorkersRequest {
                    page: Some(Page { page_size: MAX_PAGE_SIZE, page_token: page_token.clone() }),
                };
                let response = admin.list_workers(request).await?.into_inner();
                workers.extend(response.workers.into_iter().map(WorkerView::from));
                check_progress(&page_token, &response.next_page_token)?;
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
            emit(ctx.output, &WorkersView { workers, next_page_token: None })?;
        }
    }
    Ok(0)
}
