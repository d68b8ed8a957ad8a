//! `tether devices add|assign|list|show|revoke`.

use clap::Subcommand;
use tether_proto::v1::{
    AssignDeviceRequest, GetDeviceRequest, ListDevicesRequest, Page, RegisterDeviceRequest, RevokeDeviceRequest,
};

use super::{Ctx, MAX_PAGE_SIZE, check_progress};
use crate::output::emit;
use crate::views::{DeviceView, DevicesView};

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Register a company-issued device in the inventory.
    Add {
        /// Serial number.
        #[arg(long)]
        serial: String,
        /// Model name.
        #[arg(long)]
        model: String,
        /// Asset tag.
        #[arg(long, value_name = "T", default_value = "")]
        asset_tag: String,
        /// Assign the device to this worker (external id).
        #[arg(long, value_name = "EXT")]
        worker: Option<String>,
        /// Create the worker with this name if unknown.
        #[arg(long, value_name = "NAME", requires = "worker")]
        worker_name: Option<String>,
        /// Pin the device to its TPM: hex SHA-256 of the EK's SubjectPublicKeyInfo (DER).
        /// A TPM enrollment with another EK is then refused.
        #[arg(long, value_name = "HEX", default_value = "")]
        ek_pin: String,
    },
    /// Assign a device to a worker.
    Assign {
        device_id: String,
        /// The worker's external id.
        #[arg(long, value_name = "EXT")]
        worker: String,
    },
    /// List devices (all pages).
    List {
        /// Only this worker's devices.
        #[arg(long, value_name = "EXT")]
        worker: Option<String>,
        /// Include revoked devices.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Show a device and its credentials.
    Show { device_id: String },
    /// Revoke a device (and with it its credentials).
    Revoke {
        device_id: String,
        /// Why (recorded with the revocation).
        #[arg(long, value_name = "R", default_value = "")]
        reason: String,
    },
}

pub async fn run(ctx: &Ctx, command: DevicesCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    let device = match command {
        DevicesCommand::Add { serial, model, asset_tag, worker, worker_name, ek_pin } => {
            let request = RegisterDeviceRequest {
                serial_number: serial,
                model,
                asset_tag,
                worker_external_id: worker.unwrap_or_default(),
                worker_display_name: worker_name.unwrap_or_default(),
                ek_pin,
            };
            admin.register_device(request).await?.into_inner()
        }
        DevicesCommand::Assign { device_id, worker } => {
            let request = AssignDeviceRequest { device_id, worker_external_id: worker };
            admin.assign_device(request).await?.into_inner()
        }
        DevicesCommand::Show { device_id } => admin.get_device(GetDeviceRequest { device_id }).await?.into_inner(),
        DevicesCommand::Revoke { device_id, reason } => {
            admin.revoke_device(RevokeDeviceRequest { device_id, reason }).await?.into_inner()
        }
        DevicesCommand::List { worker, include_revoked } => {
            let mut devices = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListDevicesRequest {
                    worker_external_id: worker.clone().unwrap_or_default(),
                    include_revoked,
                    page: Some(Page { page_size: MAX_PAGE_SIZE, page_token: page_token.clone() }),
                };
                let response = admin.list_devices(request).await?.into_inner();
                devices.extend(response.devices.into_iter().map(DeviceView::from));
                check_progress(&page_token, &response.next_page_token)?;
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
            let view = DevicesView { devices, next_page_token: None };
            emit(ctx.output, &view)?;
            return Ok(0);
        }
    };
    emit(ctx.output, &DeviceView::from(device))?;
    Ok(0)
}
