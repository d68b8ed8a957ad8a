//! The `tether` command line definition.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::DEFAULT_SERVER;
use crate::commands::challenge::ChallengeArgs;
use crate::commands::credentials::CredentialsCommand;
use crate::commands::dev_ca::DevCaArgs;
use crate::commands::devices::DevicesCommand;
use crate::commands::gateway::GatewayCommand;
use crate::commands::integrations::IntegrationsCommand;
use crate::commands::keys::KeysCommand;
use crate::commands::policy::PolicyCommand;
use crate::commands::report::ReportCommand;
use crate::commands::tokens::TokensCommand;
use crate::commands::trust::TrustCommand;
use crate::commands::workers::WorkersCommand;
use crate::output::OutputFormat;
use crate::parse;

const OUTPUT_HELP: &str = "\
Output format. json prints one JSON document per command: the response message with its \
proto field names, enums as lowercase strings (\"allow\", \"attested\", \
\"clone_suspected\"), times as RFC 3339 strings named without the _ms suffix \
(null for never), and lists wrapped as in the proto ({\"devices\": [...], \
\"next_page_token\": null}). csv (tether report only) prints RFC 4180 comma-separated \
values with a header row, one row per item.";

/// Tether: prove remote workers are on company-issued hardware.
///
/// Admin, gateway and analyst client for tetherd. Exit codes: 0 success,
/// 2 usage, connection, authentication or server error; `gateway check`
/// also exits 1 for DENY.
#[derive(Debug, Parser)]
#[command(name = "tether", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// tetherd URL.
    #[arg(long, global = true, help_heading = "Global options", env = "TETHER_SERVER", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// API key, sent as `authorization: Bearer <KEY>`.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TETHER_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// Output format.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = OutputFormat::Table, long_help = OUTPUT_HELP)]
    pub output: OutputFormat,

    /// Limit for connecting and for each call.
    #[arg(long, global = true, help_heading = "Global options", env = "TETHER_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse::positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the tenant and the role of your API key.
    Tenant,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage workers.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Manage the device inventory.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Revoke credentials.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Manage one-time enrollment tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage the attestation trust store.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Deliver flags and presence failures to a SIEM (webhook or syslog).
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// Show or change the tenant policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Issue a presence challenge to a device now.
    Challenge(ChallengeArgs),
    /// Access decisions, as a VPN gateway asks them.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Analyst reports (newest first).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Review flags: acknowledge, resolve or reopen them with a note.
    #[command(subcommand)]
    Flags(crate::commands::flags::FlagsCommand),
    /// The tenant's tamper-evident audit log: export it, verify its hash chain.
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCommand),
    /// Verify a WebAuthn attestation offline (exit 0 verified, 1 rejected, 2 unusable input).
    VerifyAttestation(crate::verify_attestation::VerifyAttestationArgs),
    /// Verify a TPM EK certificate offline (exit 0 verified, 1 rejected, 2 unusable input).
    VerifyEk(crate::tpm::verify_ek::VerifyEkArgs),
    /// Verify a TPM quote offline (exit 0 verified, 1 rejected, 2 unusable input).
    VerifyQuote(crate::tpm::verify_quote::VerifyQuoteArgs),
    /// Verify a FIDO MDS3 metadata BLOB offline (exit 0 valid, 1 invalid, 2 unusable input).
    VerifyMds(crate::verify_mds::VerifyMdsArgs),
    /// TPM tools that work offline (make-credential).
    #[command(subcommand)]
    Tpm(crate::tpm::TpmCommand),
    /// Write a throwaway attestation CA for the software authenticator (offline).
    DevCa(DevCaArgs),
    /// Replay an event log through the risk engine (offline): flags, then one summary per device, as JSON Lines.
    Analyze(crate::analyze::AnalyzeArgs),
    /// Run the end-to-end demo.
    Demo(crate::demo::DemoArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tether").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_anywhere() {
        let cli = parse(&["keys", "list", "--output", "json", "--server", "http://127.0.0.1:9"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.server, "http://127.0.0.1:9");
        assert_eq!(cli.global.timeout, Duration::from_secs(30));
    }

    #[test]
    fn gateway_check_needs_exactly_one_of_device_or_credential() {
        let base = ["gateway", "check", "--worker", "w1", "--source-ip", "127.0.0.1", "--gateway", "g1"];
        let with = |extra: &[&str]| {
            let mut args: Vec<&str> = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(with(&[]).is_err());
        assert!(with(&["--device", "d", "--credential", "c"]).is_err());
        let cli = with(&["--credential", "c1"]).unwrap();
        let Command::Gateway(GatewayCommand::Check(args)) = cli.command else {
            panic!("expected gateway check");
        };
        let request = args.to_request();
        assert_eq!(request.credential_id, "c1");
        assert_eq!(request.device_id, "");
        assert_eq!(request.worker_external_id, "w1");
        assert_eq!(request.gateway_id, "g1");
    }

    #[test]
    fn keys_create_roles() {
        assert!(parse(&["keys", "create"]).is_err());
        assert!(parse(&["keys", "create", "--role", "root"]).is_err());
        assert!(parse(&["keys", "create", "--role", "analyst", "--name", "soc"]).is_ok());
    }

    #[test]
    fn policy_set_builds_a_partial_update() {
        assert!(parse(&["policy", "set"]).is_err(), "nothing to change");
        let cli = parse(&[
            "policy",
            "set",
            "--allow-unattested",
            "false",
            "--allowed-aaguids",
            "none",
            "--presence-interval",
            "1h",
            "--challenge-deadline",
            "5m",
        ])
        .unwrap();
        let Command::Policy(PolicyCommand::Set(args)) = cli.command else {
            panic!("expected policy set");
        };
        let request = args.to_request(None);
        assert_eq!(request.allow_unattested, Some(false));
        assert!(request.set_allowed_aaguids);
        assert!(request.allowed_aaguids.is_empty());
        assert_eq!(request.presence_interval_seconds, Some(3600));
        assert_eq!(request.challenge_deadline_seconds, Some(300));
        assert_eq!(request.presence_window_seconds, None);
        assert_eq!(request.rp_id, None);

        let cli = parse(&["policy", "set", "--presence-window", "2h"]).unwrap();
        let Command::Policy(PolicyCommand::Set(args)) = cli.command else {
            panic!("expected policy set");
        };
        assert!(!args.to_request(None).set_allowed_aaguids);
        assert!(parse(&["policy", "set", "--allow-unattested", "maybe"]).is_err());
        assert_eq!(request.hardware_unverified, None, "tiers not named are left alone");

        let cli = parse(&["policy", "set", "--self-or-none", "allow-and-flag", "--hardware-unverified", "allow"]);
        let Command::Policy(PolicyCommand::Set(args)) = cli.unwrap().command else {
            panic!("expected policy set");
        };
        let request = args.to_request(None);
        assert_eq!(request.self_or_none, Some(tether_proto::v1::TierAction::AllowAndFlag as i32));
        assert_eq!(request.hardware_unverified, Some(tether_proto::v1::TierAction::Allow as i32));
        assert_eq!(request.enforcement, None);
        let cli = parse(&["policy", "set", "--enforcement", "monitor"]).unwrap();
        let Command::Policy(PolicyCommand::Set(args)) = cli.command else {
            panic!("expected policy set");
        };
        assert_eq!(args.to_request(None).enforcement, Some(tether_proto::v1::EnforcementMode::Monitor as i32));
        assert!(parse(&["policy", "set", "--self-or-none", "maybe"]).is_err());
        assert!(parse(&["policy", "set", "--enforcement", "audit"]).is_err());
        assert!(parse(&["policy", "set", "--presence-window", "0s"]).is_err());
    }

    #[test]
    fn devices_add_worker_name_needs_worker() {
        assert!(parse(&["devices", "add", "--serial", "s", "--model", "m", "--worker-name", "n"]).is_err());
        assert!(
            parse(&["devices", "add", "--serial", "s", "--model", "m", "--worker", "w", "--worker-name", "n"]).is_ok()
        );
    }

    #[test]
    fn tokens_create_ttl() {
        let cli = parse(&["tokens", "create", "--device", "d1", "--ttl", "24h"]).unwrap();
        assert!(matches!(cli.command, Command::Tokens(TokensCommand::Create { ttl: Some(86_400), .. })));
        assert!(parse(&["tokens", "create", "--device", "d1", "--ttl", "later"]).is_err());
    }

    #[test]
    fn challenge_deadline() {
        let cli = parse(&["challenge", "dev_1", "--deadline", "5m"]).unwrap();
        let Command::Challenge(args) = cli.command else {
            panic!("expected challenge");
        };
        assert_eq!(args.device_id, "dev_1");
        assert_eq!(args.deadline, Some(300));
    }
}
