//! The `tether-agent` command line: arguments and dispatch.

mod access_token_out;
mod enroll;
mod run;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for errors (usage, transport, server, state file).
pub const EXIT_ERROR: u8 = 2;
/// Exit code for `run --once` when the server rejected an answer.
pub const EXIT_REJECTED: u8 = 1;

/// The Tether device agent: enrolls this device's hardware-bound key and
/// answers the server's presence challenges with it.
#[derive(Debug, Parser)]
#[command(
    name = "tether-agent",
    version,
    propagate_version = true,
    after_help = "Keys: the software authenticator (development and tests only) or, with --tpm, a Linux \
                  laptop's TPM 2.0.\n\
                  FIDO2 security keys (YubiKey ...) and Windows (Windows Hello) or macOS (Touch ID) laptops \
                  enroll and answer presence through the worker web app instead (tetherd serve --web-listen; \
                  docs/web-app.md). Detection then has the network and timing signals but no signed posture \
                  report: posture signals exist only where this agent also runs."
)]
pub struct Cli {
    /// tetherd URL [default: the state file's server, else http://127.0.0.1:50051].
    #[arg(long, global = true, help_heading = "Global options", env = "TETHER_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// The agent's state file (holds the device key: mode 0600).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TETHER_AGENT_STATE",
        value_name = "FILE",
        default_value = "./tether-agent.json"
    )]
    pub state: PathBuf,

    /// Output format for results on stdout.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = Output::Table)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll a fresh credential with a one-time enrollment token.
    Enroll(enroll::EnrollArgs),
    /// Answer presence challenges until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Show the enrolled device and credential.
    Status,
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Enroll(ref args) => enroll::enroll(&cli, args).await,
        Command::Run(ref args) => run::run(&cli, args).await,
        Command::Status => status::status(&cli),
    }
}

/// Parse a humantime duration ("90s", "5m"); zero is refused.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

/// Print `value` as one pretty JSON document on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Print aligned `name: value` lines.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        let value = if value.is_empty() { "-" } else { value };
        println!("{:<width$}  {value}", format!("{name}:"), width = width + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["tether-agent", "status"]).unwrap();
        assert_eq!(cli.state, PathBuf::from("./tether-agent.json"));
        assert_eq!(cli.output, Output::Table);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_positive_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("soon").is_err());
    }

    #[test]
    fn run_flags() {
        let cli = Cli::try_parse_from(["tether-agent", "run", "--poll", "--poll-interval", "10s"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert!(args.poll);
        assert_eq!(args.poll_interval, Duration::from_secs(10));
        assert!(Cli::try_parse_from(["tether-agent", "run", "--poll-interval", "10s"]).is_err());
        let cli = Cli::try_parse_from(["tether-agent", "run", "--once"]).unwrap();
        assert!(matches!(cli.command, Command::Run(ref a) if a.once && !a.poll));
    }

    #[test]
    fn enroll_flags() {
        let ok = Cli::try_parse_from([
            "tether-agent",
            "enroll",
            "--token",
            "t",
            "--attestation-ca-cert",
            "c.pem",
            "--attestation-ca-key",
            "k.pem",
        ]);
        assert!(ok.is_ok());
        let Command::Enroll(args) = ok.unwrap().command else {
            panic!("expected enroll");
        };
        assert_eq!(args.attestation_ca_cert, Some(PathBuf::from("c.pem")));
        // A CA certificate needs its key, and excludes self attestation.
        assert!(
            Cli::try_parse_from(["tether-agent", "enroll", "--token", "t", "--attestation-ca-cert", "c.pem"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "tether-agent",
                "enroll",
                "--token",
                "t",
                "--self-attestation",
                "--attestation-ca-cert",
                "c.pem",
                "--attestation-ca-key",
                "k.pem",
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["tether-agent", "enroll", "--token", "t", "--aaguid", "not-a-uuid"]).is_err());
    }
}
