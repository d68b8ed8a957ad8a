//! `tether policy pcr set|list|clear`: expected PCR values for TPM devices, per device model or
//! per device (a device's policy wins over its model's).

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use tether_proto::v1::{
    self as pb, ClearPcrPolicyRequest, ListPcrPoliciesRequest, PcrExpectation, PcrPolicyScope, SetPcrPolicyRequest,
    pcr_policy_scope::Target,
};

use crate::commands::Ctx;
use crate::output::{Render, Table, emit, rfc3339, time_cell};

#[derive(Debug, Subcommand)]
pub enum PcrCommand {
    /// Set (replace) the expected PCR values for a model or a device.
    Set(PcrSetArgs),
    /// List the PCR policies.
    List,
    /// Remove the PCR policy of a model or a device.
    Clear(PcrScopeArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["model", "device"])))]
pub struct PcrScopeArgs {
    /// Every device whose inventory model is exactly this.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// One device, by id.
    #[arg(long, value_name = "DEVICE_ID")]
    pub device: Option<String>,
}

impl PcrScopeArgs {
    fn to_proto(&self) -> PcrPolicyScope {
        let target = match (&self.device, &self.model) {
            (Some(device), _) => Some(Target::DeviceId(device.clone())),
            (None, Some(model)) => Some(Target::Model(model.clone())),
            (None, None) => None,
        };
        PcrPolicyScope { target }
    }
}

#[derive(Debug, Args)]
pub struct PcrSetArgs {
    #[command(flatten)]
    pub scope: PcrScopeArgs,
    /// An expected value, BANK:INDEX=HEX (e.g. sha256:7=3d45…); repeat for more PCRs.
    #[arg(long = "pcr", value_name = "BANK:INDEX=HEX", value_parser = parse_pcr, required = true)]
    pub pcrs: Vec<PcrExpectation>,
}

/// Parses `sha256:7=HEX`; the bank defaults to sha256 (`7=HEX`).
pub fn parse_pcr(text: &str) -> Result<PcrExpectation, String> {
    let (pcr, value) =
        text.split_once('=').ok_or_else(|| format!("{text:?} is not BANK:INDEX=HEX (e.g. sha256:7=3d45…)"))?;
    let (bank, index) = pcr.split_once(':').unwrap_or(("sha256", pcr));
    let index = index.trim().parse::<u32>().map_err(|_| format!("{index:?} is not a PCR index (0-23)"))?;
    let value = value.trim();
    let digits = value.strip_prefix("0x").unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the value of PCR {index} is not hex"));
    }
    Ok(PcrExpectation { bank: bank.trim().to_ascii_lowercase(), index, value_hex: digits.to_ascii_lowercase() })
}

#[derive(Debug, Serialize)]
pub struct PcrPolicyView {
    /// "device" or "model".
    pub scope: String,
    /// The device id or the model.
    pub target: String,
    /// BANK:INDEX → expected hex value.
    pub pcrs: Vec<PcrView>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PcrView {
    pub bank: String,
    pub index: u32,
    pub value_hex: String,
}

impl From<pb::PcrPolicy> for PcrPolicyView {
    fn from(p: pb::PcrPolicy) -> Self {
        let (scope, target) = match p.scope.and_then(|s| s.target) {
            Some(Target::DeviceId(id)) => ("device", id),
            Some(Target::Model(model)) => ("model", model),
            None => ("", String::new()),
        };
        PcrPolicyView {
            scope: scope.to_owned(),
            target,
            pcrs: p
                .pcrs
                .into_iter()
                .map(|e| PcrView { bank: e.bank, index: e.index, value_hex: e.value_hex })
                .collect(),
            updated_at: rfc3339(p.updated_at_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PcrPoliciesView {
    pub policies: Vec<PcrPolicyView>,
}

impl Render for PcrPoliciesView {
    fn to_text(&self) -> String {
        let mut table = Table::new(&["SCOPE", "TARGET", "PCR", "EXPECTED", "UPDATED"]);
        for p in &self.policies {
            for e in &p.pcrs {
                table.row([
                    p.scope.clone(),
                    p.target.clone(),
                    format!("{}:{}", e.bank, e.index),
                    e.value_hex.clone(),
                    time_cell(&p.updated_at),
                ]);
            }
        }
        table.render()
    }
}

pub async fn run(ctx: &Ctx, command: PcrCommand) -> anyhow::Result<i32> {
    let mut admin = ctx.admin().await?;
    let policies = match command {
        PcrCommand::Set(args) => {
            let request = SetPcrPolicyRequest { scope: Some(args.scope.to_proto()), pcrs: args.pcrs };
            vec![admin.set_pcr_policy(request).await?.into_inner()]
        }
        PcrCommand::List => admin.list_pcr_policies(ListPcrPoliciesRequest {}).await?.into_inner().policies,
        PcrCommand::Clear(scope) => {
            vec![admin.clear_pcr_policy(ClearPcrPolicyRequest { scope: Some(scope.to_proto()) }).await?.into_inner()]
        }
    };
    emit(ctx.output, &PcrPoliciesView { policies: policies.into_iter().map(Into::into).collect() })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_arguments_parse() {
        let e = parse_pcr("sha256:7=AB01").unwrap();
        assert_eq!((e.bank.as_str(), e.index, e.value_hex.as_str()), ("sha256", 7, "ab01"));
        let e = parse_pcr("16=0x00ff").unwrap();
        assert_eq!((e.bank.as_str(), e.index, e.value_hex.as_str()), ("sha256", 16, "00ff"));
        assert!(parse_pcr("sha256:7").is_err());
        assert!(parse_pcr("sha256:x=00").is_err());
        assert!(parse_pcr("sha256:7=zz").is_err());
        assert!(parse_pcr("sha256:7=").is_err());
    }
}
