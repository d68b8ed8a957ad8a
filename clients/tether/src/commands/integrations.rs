//! `tether integrations add|list|remove`: SIEM delivery of flags and presence failures.

use clap::{Subcommand, ValueEnum};
use tether_proto::v1::{AddIntegrationRequest, ListIntegrationsRequest, RemoveIntegrationRequest};

use super::Ctx;
use crate::output::emit;
use crate::views::{AddedIntegrationView, IntegrationView, IntegrationsView};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Signed JSON POSTs to an https:// URL.
    Webhook,
    /// RFC 5424 syslog over TCP (add --tls for TLS).
    Syslog,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Cef,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Deliver this tenant's new flags and presence failures to a receiver.
    /// A webhook's secret is printed once, now.
    Add {
        #[arg(long, value_enum)]
        kind: Kind,
        /// webhook: https:// URL (http:// only to loopback); syslog: host:port.
        #[arg(long)]
        target: String,
        /// A label for the integration.
        #[arg(long)]
        name: String,
        /// Message format (cef: syslog only).
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// syslog: TLS on the TCP connection.
        #[arg(long)]
        tls: bool,
    },
    /// List integrations with their delivery state (secrets are never shown again).
    List,
    /// Stop delivering to an integration.
    Remove { id: String },
}

pub async fn run(ctx: &Ctx, command: IntegrationsCommand) -> anyhow::Result<i32> {
    match command {
        IntegrationsCommand::Add { kind, target, name, format, tls } => {
            let request = AddIntegrationRequest {
                name,
                kind: match kind {
                    Kind::Webhook => "webhook",
                    Kind::Syslog => "syslog",
                }
                .into(),
                target,
                format: match format {
                    Format::Json => "json",
                    Format::Cef => "cef",
                }
                .into(),
                tls,
            };
            let response = ctx.admin().await?.add_integration(request).await?.into_inner();
            let integration = response.integration.map(IntegrationView::from);
            let integration = integration.ok_or_else(|| anyhow::anyhow!("the server returned no integration"))?;
            emit(ctx.output, &AddedIntegrationView { integration, secret: response.secret })?;
        }
        IntegrationsCommand::List => {
            let response = ctx.admin().await?.list_integrations(ListIntegrationsRequest {}).await?.into_inner();
            let integrations = response.integrations.into_iter().map(Into::into).collect();
            emit(ctx.output, &IntegrationsView { integrations })?;
        }
        IntegrationsCommand::Remove { id } => {
            let removed = ctx.admin().await?.remove_integration(RemoveIntegrationRequest { id }).await?.into_inner();
            emit(ctx.output, &IntegrationView::from(removed))?;
        }
    }
    Ok(0)
}
