//! `tether`: the admin, gateway and analyst client for tetherd.
//!
//! `main` only parses and dispatches; each command group lives in its own
//! module under `commands/`.

// `tether analyze` replays millions of events; see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analyze;
mod cli;
mod client;
mod commands;
mod demo;
mod offline;
mod output;
mod parse;
mod tpm;
mod verify_attestation;
mod verify_mds;
mod views;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::commands::Ctx;

/// Usage, transport, authentication and server errors.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| {
        // Under OpenVPN (which sets $script_type) a usage error must exit 1:
        // OpenVPN reads 2 from auth-user-pass-verify as "deferred" and would
        // leave the client waiting instead of refusing it.
        if error.use_stderr() && std::env::var_os("script_type").is_some() {
            let _ = error.print();
            std::process::exit(1);
        }
        error.exit()
    });
    let api_key_given = cli.global.api_key.is_some();

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ERROR)),
        Err(error) => {
            eprintln!("error: {}", client::error_message(&error, api_key_given));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let Cli { global, command } = cli;
    let ctx = context(global);
    match command {
        // Offline; its own exit codes (0 the log was read, 2 it could not be).
        Command::Analyze(args) => std::process::exit(analyze::run(args)),
        Command::Demo(args) => demo::run(args).await.map(|()| 0),
        Command::DevCa(args) => commands::dev_ca::run(ctx.output, args),
        // Offline and synchronous; its own exit codes (0 verified, 1 rejected, 2 unusable).
        Command::VerifyAttestation(args) => std::process::exit(verify_attestation::run(args)),
        Command::VerifyEk(args) => std::process::exit(tpm::verify_ek::run(&args)),
        Command::VerifyQuote(args) => std::process::exit(tpm::verify_quote::run(&args)),
        Command::VerifyMds(args) => std::process::exit(verify_mds::run(&args)),
        Command::Tpm(c) => std::process::exit(tpm::run(c)),
        Command::Tenant => commands::tenant::run(&ctx).await,
        Command::Keys(c) => commands::keys::run(&ctx, c).await,
        Command::Workers(c) => commands::workers::run(&ctx, c).await,
        Command::Devices(c) => commands::devices::run(&ctx, c).await,
        Command::Credentials(c) => commands::credentials::run(&ctx, c).await,
        Command::Tokens(c) => commands::tokens::run(&ctx, c).await,
        Command::Trust(c) => commands::trust::run(&ctx, c).await,
        Command::Integrations(c) => commands::integrations::run(&ctx, c).await,
        Command::Policy(c) => commands::policy::run(&ctx, c).await,
        Command::Challenge(args) => commands::challenge::run(&ctx, args).await,
        Command::Gateway(c) => commands::gateway::run(&ctx, c).await,
        Command::Report(c) => commands::report::run(&ctx, c).await,
        Command::Audit(c) => commands::audit::run(&ctx, c).await,
        Command::Flags(c) => commands::flags::run(&ctx, c).await,
    }
}

fn context(global: GlobalArgs) -> Ctx {
    Ctx::new(global.server, global.api_key, global.timeout, global.output)
}
