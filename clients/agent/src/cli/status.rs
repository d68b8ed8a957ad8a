//! `tether-agent status`.

use serde::Serialize;
use tether_agent::AgentState;

use super::{Cli, Output, print_fields, print_json};

#[derive(Serialize)]
struct StatusOutput<'a> {
    state_file: String,
    server: &'a str,
    device_id: &'a str,
    credential_id: &'a str,
    backend: &'a str,
    sign_count: Option<u32>,
}

pub fn status(cli: &Cli) -> anyhow::Result<u8> {
    let state = AgentState::load(&cli.state)?;
    // The authenticator state holds the private key: never print it.
    let sign_count = state.authenticator()?.sign_count();
    let out = StatusOutput {
        state_file: cli.state.display().to_string(),
        server: &state.server,
        device_id: &state.device_id,
        credential_id: &state.credential_id,
        backend: &state.backend,
        sign_count,
    };
    match cli.output {
        Output::Json => print_json(&out)?,
        Output::Table => print_fields(&[
            ("state file", out.state_file.clone()),
            ("server", out.server.to_string()),
            ("device id", out.device_id.to_string()),
            ("credential id", out.credential_id.to_string()),
            ("backend", out.backend.to_string()),
            ("sign count", out.sign_count.map(|n| n.to_string()).unwrap_or_default()),
        ]),
    }
    Ok(0)
}
