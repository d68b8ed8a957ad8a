//! `tether workers add|list`.

use clap::Subcommand;
use tether_proto::v1::{ListWorkersRequest, Page, UpsertWorkerRequest};

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
    /// List all workers.
    List,
}

pub async fn run(ctx: &Ctx, command: WorkersCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    match command {
        WorkersCommand::Add { external_id, name } => {
            let request = UpsertWorkerRequest { external_id, display_name: name };
            let worker = admin.upsert_worker(request).await?.into_inner();
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
