//! One module per command group. Each `run` returns the process exit code.

pub mod audit;
pub mod challenge;
pub mod credentials;
pub mod dev_ca;
pub mod devices;
pub mod flags;
pub mod gateway;
pub mod integrations;
pub mod keys;
pub mod openvpn;
pub mod policy;
pub mod report;
pub mod tenant;
pub mod token_keys;
pub mod tokens;
pub mod trust;
pub mod workers;

use std::time::Duration;

use tether_proto::v1::access_service_client::AccessServiceClient;
use tether_proto::v1::admin_service_client::AdminServiceClient;
use tether_proto::v1::report_service_client::ReportServiceClient;
use tokio::sync::OnceCell;

use crate::client::{Authed, Connection};
use crate::output::OutputFormat;

/// What every server command gets. The connection is opened on first use,
/// so local mistakes (a missing file, a bad time range) are reported before
/// the network is involved.
pub struct Ctx {
    pub server: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub output: OutputFormat,
    conn: OnceCell<Connection>,
}

impl Ctx {
    pub fn new(server: String, api_key: Option<String>, timeout: Duration, output: OutputFormat) -> Self {
        Self { server, api_key, timeout, output, conn: OnceCell::new() }
    }

    async fn conn(&self) -> anyhow::Result<&Connection> {
        self.conn.get_or_try_init(|| Connection::open(&self.server, self.api_key.as_deref(), self.timeout)).await
    }

    pub async fn admin(&self) -> anyhow::Result<AdminServiceClient<Authed>> {
        Ok(self.conn().await?.admin())
    }

    pub async fn access(&self) -> anyhow::Result<AccessServiceClient<Authed>> {
        Ok(self.conn().await?.access())
    }

    pub async fn report(&self) -> anyhow::Result<ReportServiceClient<Authed>> {
        Ok(self.conn().await?.report())
    }
}

/// Largest page the server hands out; used when fetching whole lists.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Guard for `--all` loops: a server that repeats a page token would loop forever.
pub fn check_progress(previous: &str, next: &str) -> anyhow::Result<()> {
    if !next.is_empty() && next == previous {
        anyhow::bail!("the server returned the same page token twice; stopping");
    }
    Ok(())
}
