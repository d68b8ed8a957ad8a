//! `tether-agent run`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tether_agent::posture::Collector;
use tether_agent::{
    AgentError, AnswerChallengeResponse, AnswerOptions, PersistingAuthenticator, PresenceOutcome, WatchMode,
};

use super::{Cli, EXIT_ERROR, EXIT_REJECTED, Output, parse_positive_duration, print_json};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Poll for challenges instead of holding a stream open.
    #[arg(long)]
    pub poll: bool,

    /// Time between polls.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration, requires = "poll")]
    pub poll_interval: Duration,

    /// Answer what is pending now and exit (0 = all accepted, 1 = an answer was rejected, 2 = error).
    #[arg(long)]
    pub once: bool,

    /// Send no posture report (USB devices, process names, timezone, display
    /// names, hashed gateway MAC) with the answers.
    #[arg(long)]
    pub no_posture: bool,

    /// Read posture from this directory instead of / (its sys/, proc/ and etc/
    /// subfolders; for containers that mount the host's elsewhere, and tests).
    #[arg(long, value_name = "DIR", conflicts_with = "no_posture")]
    pub posture_root: Option<std::path::PathBuf>,

    /// With --once: ask for a short-lived access token with the answer and write it to FILE
    /// (mode 0600; replaced atomically), for a VPN client or proxy to present.
    #[arg(long, value_name = "FILE", requires = "once")]
    pub access_token_out: Option<std::path::PathBuf>,
}

impl RunArgs {
    fn answer_options(&self) -> AnswerOptions {
        let posture = match (&self.posture_root, self.no_posture) {
            (_, true) => None,
            (Some(root), false) => Some(Collector::with_root(root)),
            (None, false) => Some(Collector::default()),
        };
        AnswerOptions { posture, request_access_token: self.access_token_out.is_some() }
    }
}

pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<u8> {
    let mut auth = PersistingAuthenticator::load(&cli.state)?;
    let server = cli.server.clone().unwrap_or_else(|| auth.state().server.clone());
    let credential_id = auth.state().credential_id.clone();

    if args.once {
        let token_out = args.access_token_out.as_deref();
        return run_once(cli, &server, &credential_id, &mut auth, &args.answer_options(), token_out).await;
    }

    let mode = if args.poll { WatchMode::Poll { interval: args.poll_interval } } else { WatchMode::Stream };
    tracing::info!(
        server = %server,
        device_id = %auth.state().device_id,
        credential_id = %credential_id,
        "tether-agent running"
    );
    let channel = tether_agent::connect_lazy(&server)?;
    let options = args.answer_options();
    tether_agent::run_with(channel, &credential_id, &mut auth, mode, &options, shutdown_signal(), |_, _| {}).await?;
    Ok(0)
}

#[derive(Serialize)]
struct AnswerOutput {
    challenge_id: String,
    device_id: String,
    /// "ok", "failed", "late", ... or null when the answer did not get through.
    outcome: Option<String>,
    error: Option<String>,
}

async fn run_once(
    cli: &Cli,
    server: &str,
    credential_id: &str,
    auth: &mut PersistingAuthenticator,
    options: &AnswerOptions,
    token_out: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    let channel = tether_agent::connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let results = tether_agent::answer_pending_with(channel, credential_id, auth, options).await?;
    if let Some(path) = token_out {
        super::access_token_out::write(path, results.iter().map(|(_, result)| result))?;
    }
    let answers: Vec<AnswerOutput> = results
        .iter()
        .map(|(challenge, result)| answer_output(&challenge.challenge_id, &challenge.device_id, result))
        .collect();
    let verdict = once_exit_code(results.iter().map(|(_, result)| result));
    match cli.output {
        Output::Json => print_json(&answers)?,
        Output::Table => {
            if answers.is_empty() {
                println!("no pending challenges");
            }
            for answer in &answers {
                match (&answer.outcome, &answer.error) {
                    (Some(outcome), _) => println!("{}  {outcome}", answer.challenge_id),
                    (None, Some(error)) => println!("{}  error: {error}", answer.challenge_id),
                    (None, None) => println!("{}  -", answer.challenge_id),
                }
            }
        }
    }
    Ok(verdict)
}

/// 0 when every answer was accepted; 1 when the server rejected one (a
/// verdict on the answer); 2 when one could not be made or delivered
/// (authenticator, state file, transport), which takes precedence.
fn once_exit_code<'a>(results: impl IntoIterator<Item = &'a Result<AnswerChallengeResponse, AgentError>>) -> u8 {
    let mut code = 0;
    for result in results {
        match result {
            Ok(response) if response.outcome() == PresenceOutcome::Ok => {}
            Ok(_) => code = code.max(EXIT_REJECTED),
            Err(AgentError::Status(status)) if !error_is_transient(status) => code = code.max(EXIT_REJECTED),
            Err(_) => code = EXIT_ERROR,
        }
    }
    code
}

fn error_is_transient(status: &tonic::Status) -> bool {
    AgentError::Status(status.clone()).is_transient()
}

fn answer_output(
    challenge_id: &str,
    device_id: &str,
    result: &Result<AnswerChallengeResponse, AgentError>,
) -> AnswerOutput {
    match result {
        Ok(response) => AnswerOutput {
            challenge_id: challenge_id.to_string(),
            device_id: device_id.to_string(),
            outcome: Some(outcome_name(response.outcome())),
            error: None,
        },
        Err(error) => AnswerOutput {
            challenge_id: challenge_id.to_string(),
            device_id: device_id.to_string(),
            outcome: None,
            error: Some(error.to_string()),
        },
    }
}

/// "PRESENCE_OUTCOME_CLONE_SUSPECTED" -> "clone_suspected".
fn outcome_name(outcome: PresenceOutcome) -> String {
    outcome.as_str_name().trim_start_matches("PRESENCE_OUTCOME_").to_ascii_lowercase()
}

/// Completes on SIGINT or SIGTERM. If no handler can be installed it never
/// completes (the agent then stops only when killed).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    result = tokio::signal::ctrl_c() => {
                        if result.is_err() {
                            terminate.recv().await;
                        }
                    }
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                ctrl_c_or_forever().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c_or_forever().await;
}

#[cfg_attr(unix, allow(dead_code))]
async fn ctrl_c_or_forever() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %error, "cannot listen for SIGINT");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_lowercase() {
        assert_eq!(outcome_name(PresenceOutcome::Ok), "ok");
        assert_eq!(outcome_name(PresenceOutcome::CloneSuspected), "clone_suspected");
    }

    #[test]
    fn answers_render_outcome_or_error() {
        let ok = answer_output(
            "c1",
            "d1",
            &Ok(AnswerChallengeResponse {
                outcome: PresenceOutcome::Late as i32,
                verified_at_ms: 0,
                ..Default::default()
            }),
        );
        assert_eq!(ok.outcome.as_deref(), Some("late"));
        assert!(ok.error.is_none());
        let err = answer_output("c2", "d1", &Err(AgentError::Authenticator("boom".into())));
        assert!(err.outcome.is_none());
        assert_eq!(err.error.as_deref(), Some("authenticator: boom"));
    }

    #[test]
    fn once_exit_codes() {
        let ok = || {
            Ok(AnswerChallengeResponse { outcome: PresenceOutcome::Ok as i32, verified_at_ms: 1, ..Default::default() })
        };
        let rejected = || Err(AgentError::Status(tonic::Status::permission_denied("bad signature")));
        let unreachable = || Err(AgentError::Status(tonic::Status::unavailable("down")));
        let broken = || Err(AgentError::Authenticator("no key".into()));
        assert_eq!(once_exit_code(&[]), 0);
        assert_eq!(once_exit_code(&[ok(), ok()]), 0);
        assert_eq!(once_exit_code(&[ok(), rejected()]), EXIT_REJECTED);
        assert_eq!(
            once_exit_code(&[Ok(AnswerChallengeResponse {
                outcome: PresenceOutcome::Late as i32,
                verified_at_ms: 0,
                ..Default::default()
            })]),
            EXIT_REJECTED
        );
        assert_eq!(once_exit_code(&[rejected(), unreachable()]), EXIT_ERROR);
        assert_eq!(once_exit_code(&[broken(), rejected()]), EXIT_ERROR);
    }
}
