//! `tether gateway openvpn-verify` (for `auth-user-pass-verify CMD via-file`)
//! and `tether gateway openvpn-connect` (for `client-connect CMD`).
//!
//! OpenVPN runs the command, waits for it, and admits the client only on exit
//! 0. Both commands ask tetherd's `CheckAccess` and print one line on stderr,
//! which OpenVPN's log receives. Exit 0 = ALLOW; everything else (DENY,
//! unusable client input, no decision: configuration, tetherd unreachable,
//! timeout) exits 1 and the log line says which. Never 2: OpenVPN reads 2 from
//! `auth-user-pass-verify` as "deferred" and would leave the client waiting.
//!
//! OpenVPN blocks every client while a script runs, so the whole check has
//! its own short deadline (`--check-timeout`) and fails closed on expiry.

pub mod input;
mod offline;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tether_proto::v1::{CheckAccessRequest, CheckAccessResponse, Decision};

use self::input::{Credentials, OpenVpnInputError, ScriptEnv};
use super::Ctx;
use crate::client::Connection;
use crate::output::clean;
use crate::parse;
use crate::views;

pub const EXIT_ADMIT: i32 = 0;
pub const EXIT_REFUSE: i32 = 1;

/// Options both scripts share.
#[derive(Debug, Args)]
pub struct OpenVpnArgs {
    /// This gateway's id (recorded with the session).
    #[arg(long, value_name = "G", env = "TETHER_GATEWAY_ID", default_value = "openvpn")]
    pub gateway: String,
    /// Read the gateway API key from this file (it wins over --api-key).
    /// OpenVPN gives scripts only its own variables (and `setenv` ones), not
    /// its process environment.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Limit for connecting to tetherd and the check together. OpenVPN serves
    /// no one while a script runs; on expiry the client is refused.
    #[arg(long, value_name = "DURATION", env = "TETHER_OPENVPN_TIMEOUT", default_value = "5s", value_parser = parse::positive_duration)]
    pub check_timeout: Duration,
    /// Do not use the client certificate's common name as the device id
    /// (the device then comes from the access token).
    #[arg(long)]
    pub ignore_common_name: bool,
    /// Decide offline: admit only on an access token that verifies with this
    /// key set (from `tether gateway token-keys`), was issued in the tenant it
    /// names, names this worker (and device) and was issued to this address.
    /// tetherd is not asked, so revocations and flags newer than the token are
    /// not seen.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: OpenVpnArgs,
    /// The credentials file OpenVPN appends (`via-file`): username = worker
    /// external id, password = access token or empty.
    #[arg(value_name = "CREDENTIALS_FILE")]
    pub credentials_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: OpenVpnArgs,
    /// The per-client config file OpenVPN appends; left untouched.
    #[arg(value_name = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
}

/// A decision that was not made: refused without asking tetherd.
#[derive(Debug)]
enum Refusal {
    /// The client's input (credentials, certificate, peer info) is unusable.
    Input(String),
    /// Configuration, transport or server trouble.
    Error(String),
}

impl From<OpenVpnInputError> for Refusal {
    fn from(error: OpenVpnInputError) -> Self {
        Refusal::Input(error.to_string())
    }
}

pub async fn verify(ctx: &Ctx, args: VerifyArgs) -> i32 {
    const NAME: &str = "openvpn-verify";
    let outcome = async {
        let env = ScriptEnv::from_vars(std::env::vars_os())?;
        expect_script_type(&env, "user-pass-verify")?;
        let credentials = read_credentials(&args.credentials_file)?;
        refuse_peer_token(&env)?;
        let token = credentials.token();
        let request = access_request(&credentials.username, &env, token, &args.common)?;
        Ok(request)
    }
    .await;
    finish(ctx, NAME, &args.common, outcome).await
}

pub async fn connect(ctx: &Ctx, args: ConnectArgs) -> i32 {
    const NAME: &str = "openvpn-connect";
    let outcome = async {
        let env = ScriptEnv::from_vars(std::env::vars_os())?;
        expect_script_type(&env, "client-connect")?;
        let worker = env.username.clone().ok_or_else(|| {
            Refusal::Input("no $username: the client must use auth-user-pass with its worker id as the username".into())
        })?;
        refuse_peer_token(&env)?;
        // The password never reaches client-connect; the verify hook checked any token.
        access_request(&worker, &env, None, &args.common)
    }
    .await;
    finish(ctx, NAME, &args.common, outcome).await
}

/// Asks tetherd (unless already refused), prints the one log line, returns the exit code.
async fn finish(ctx: &Ctx, name: &str, common: &OpenVpnArgs, outcome: Result<CheckAccessRequest, Refusal>) -> i32 {
    let request = match outcome {
        Ok(request) => request,
        Err(refusal) => return report_refusal(name, &refusal),
    };
    let who = describe(&request);
    if let Some(path) = &common.keys {
        return decide_offline(name, &who, path, &request);
    }
    match ask(ctx, common, request).await {
        Ok(response) => match response.decision() {
            Decision::Allow => {
                eprintln!(
                    "tether {name}: ALLOW {who} (session {}){}",
                    clean(&response.session_id),
                    reported(&response)
                );
                EXIT_ADMIT
            }
            Decision::Deny => {
                eprintln!("tether {name}: DENY {who}: {}", reasons(&response));
                EXIT_REFUSE
            }
            Decision::Unspecified => {
                report_refusal(name, &Refusal::Error(format!("tetherd returned no decision for {who}")))
            }
        },
        Err(refusal) => report_refusal(name, &refusal),
    }
}

fn decide_offline(name: &str, who: &str, path: &Path, request: &CheckAccessRequest) -> i32 {
    let keys = match offline::load_keys(path) {
        Ok(keys) => keys,
        Err(message) => return report_refusal(name, &Refusal::Error(message)),
    };
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    match offline::decide(request, &keys, now_ms) {
        Ok(claims) => {
            eprintln!(
                "tether {name}: ALLOW (offline) {who}: token {} for device {:?}",
                clean(&claims.token_id),
                clean(&claims.device_id)
            );
            EXIT_ADMIT
        }
        Err(reason) => {
            eprintln!("tether {name}: DENY (offline) {who}: {}", clean(&reason));
            EXIT_REFUSE
        }
    }
}

fn report_refusal(name: &str, refusal: &Refusal) -> i32 {
    match refusal {
        Refusal::Input(message) => {
            eprintln!("tether {name}: REFUSED (bad client input): {}", clean(message));
            EXIT_REFUSE
        }
        Refusal::Error(message) => {
            eprintln!("tether {name}: REFUSED (no decision, failing closed): {}", clean(message));
            EXIT_REFUSE
        }
    }
}

/// OpenVPN cuts every peer-info line at 255 bytes (seen with 2.6: 239 bytes
/// of `UV_TETHER_TOKEN`) and logs it at any verbosity, so a token cannot
/// travel that way. Refusing says so, where ignoring it would hide the mistake.
fn refuse_peer_token(env: &ScriptEnv) -> Result<(), Refusal> {
    match &env.peer_token {
        Some(_) => Err(Refusal::Input(format!(
            "${} was pushed as peer info, which OpenVPN truncates to 255 bytes and logs; send the access token \
             as the password instead",
            input::PEER_TOKEN_VAR
        ))),
        None => Ok(()),
    }
}

/// A script wired to the wrong hook would check the wrong things. OpenVPN
/// sets `$script_type` for every hook, so without it the command was not
/// started by the hook it is for and cannot know what its input means.
fn expect_script_type(env: &ScriptEnv, expected: &str) -> Result<(), Refusal> {
    match env.script_type.as_deref() {
        Some(actual) if actual == expected => Ok(()),
        Some(actual) => Err(Refusal::Error(format!(
            "this command is for OpenVPN's {expected} hook but runs as {actual:?}; fix the server configuration"
        ))),
        None => Err(Refusal::Error(format!(
            "no $script_type: OpenVPN sets it for every hook, so this was not run by OpenVPN's {expected} hook; \
             run it only from the server configuration"
        ))),
    }
}

fn read_credentials(path: &Path) -> Result<Credentials, Refusal> {
    let file = std::fs::File::open(path).map_err(|e| {
        Refusal::Error(format!("cannot open the credentials file {} ({e}); is the hook `via-file`?", path.display()))
    })?;
    // One byte over the limit is enough to refuse; never read an unbounded file.
    let mut bytes = Vec::new();
    let limit = u64::try_from(input::MAX_CREDENTIALS_FILE + 1).unwrap_or(u64::MAX);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Refusal::Error(format!("cannot read the credentials file {}: {e}", path.display())))?;
    Ok(input::parse_credentials_file(&bytes)?)
}

/// The request for `worker` from this environment. The device is the
/// certificate's common name (unless ignored); a token may name it instead.
fn access_request(
    worker: &str,
    env: &ScriptEnv,
    token: Option<&str>,
    common: &OpenVpnArgs,
) -> Result<CheckAccessRequest, Refusal> {
    let device = if common.ignore_common_name { None } else { env.common_name.clone() };
    if device.is_none() && token.is_none() {
        return Err(Refusal::Input(
            "no device: the client certificate has no common name (or it is ignored) and no access token was sent"
                .into(),
        ));
    }
    let source_ip = env.source_ip.ok_or_else(|| {
        Refusal::Input("no client address: OpenVPN sets $untrusted_ip or $untrusted_ip6 for every client".into())
    })?;
    Ok(CheckAccessRequest {
        worker_external_id: worker.to_string(),
        device_id: device.unwrap_or_default(),
        source_ip: source_ip.to_string(),
        gateway_id: common.gateway.clone(),
        // tetherd verifies it and checks it names this worker and device.
        access_token: token.unwrap_or_default().to_string(),
        ..Default::default()
    })
}

async fn ask(ctx: &Ctx, common: &OpenVpnArgs, request: CheckAccessRequest) -> Result<CheckAccessResponse, Refusal> {
    let api_key = match &common.api_key_file {
        Some(path) => Some(read_api_key(path)?),
        None => ctx.api_key.clone(),
    };
    let Some(api_key) = api_key else {
        return Err(Refusal::Error(
            "no gateway API key: give --api-key-file FILE (or --api-key / `setenv TETHER_API_KEY` in the server config)"
                .into(),
        ));
    };
    let deadline = common.check_timeout;
    let call = async {
        let connection = Connection::open(&ctx.server, Some(&api_key), deadline).await?;
        let response = connection.access().check_access(request).await?;
        anyhow::Ok(response.into_inner())
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(Refusal::Error(crate::client::error_message(&error, true))),
        Err(_) => Err(Refusal::Error(format!(
            "tetherd at {} did not answer within {}",
            ctx.server,
            humantime::format_duration(deadline)
        ))),
    }
}

fn read_api_key(path: &Path) -> Result<String, Refusal> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refusal::Error(format!("cannot read the API key file {}: {e}", path.display())))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(Refusal::Error(format!("the API key file {} is empty", path.display())));
    }
    Ok(key.to_string())
}

fn describe(request: &CheckAccessRequest) -> String {
    let device = if request.device_id.is_empty() {
        "(named by the token)".to_string()
    } else {
        format!("{:?}", request.device_id)
    };
    clean(&format!("worker {:?} device {device} from {}", request.worker_external_id, request.source_ip))
}

/// "; reported flags: relocated (review)" when the tenant's policy let open flags through.
fn reported(response: &CheckAccessResponse) -> String {
    if response.open_flags.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = response
        .open_flags
        .iter()
        .map(|f| clean(&format!("{} ({})", f.kind, views::flag_severity(f.severity))))
        .collect();
    format!("; reported flags: {}", parts.join(", "))
}

fn reasons(response: &CheckAccessResponse) -> String {
    if response.reasons.is_empty() {
        return "no reason given".into();
    }
    let parts: Vec<String> =
        response.reasons.iter().map(|r| clean(&format!("{}: {}", views::deny_reason(r.code), r.detail))).collect();
    parts.join("; ")
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
