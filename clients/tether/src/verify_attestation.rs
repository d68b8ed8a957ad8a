//! `tether verify-attestation`: verifies a WebAuthn registration (attestation) offline,
//! without a server, and prints one JSON verdict.
//!
//! Exit codes: 0 when the statement is valid, chains to one of the given anchors and passes
//! the AAGUID list; 1 when it is rejected; 2 for usage errors or unreadable input. The JSON
//! is printed in every case that gets past argument parsing, with `error` saying why.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tether_attestation::json::RegistrationResponseJson;
use tether_attestation::registration::{AttestationTrust, RegistrationExpectation, verify_registration};
use tether_attestation::uuid::Uuid;
use tether_attestation::{b64url_decode, b64url_encode};

use crate::offline::{load_trust_anchors, rfc3339};
use time::OffsetDateTime;

const EXIT_VERIFIED: i32 = 0;
const EXIT_REJECTED: i32 = 1;
const EXIT_UNUSABLE_INPUT: i32 = 2;
/// A registration response is a few KiB; this guards against reading something huge.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Verify a WebAuthn attestation offline.
///
/// Reads a RegistrationResponseJSON and checks the ceremony (challenge, origin, RP id,
/// flags), the attestation statement and its certificate chain against the given trust
/// anchors. Prints one JSON object (verified, format, attestation_type, aaguid,
/// credential_id, trust_anchor, user_verified, error). Exits 0 only when the statement is
/// valid, chains to a given anchor and passes the AAGUID list; 1 when rejected; 2 for usage
/// errors or unreadable input.
#[derive(Debug, clap::Args)]
pub struct VerifyAttestationArgs {
    /// The relying party id the credential was created for, e.g. example.com.
    #[arg(long, value_name = "ID")]
    pub rp_id: String,

    /// The exact origin expected in clientDataJSON, e.g. https://login.example.com.
    #[arg(long, value_name = "URL")]
    pub origin: String,

    /// The challenge that was issued for this registration, base64url.
    #[arg(long, value_name = "B64URL", value_parser = base64url_text)]
    pub challenge: String,

    /// A PEM file of root certificates, or a directory whose *.pem and *.crt files are read.
    #[arg(long, value_name = "PATH")]
    pub trust_anchors: PathBuf,

    /// Evaluate certificate validity at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub at: Option<OffsetDateTime>,

    /// Accept only this authenticator model (AAGUID); repeat to allow several. Default: any.
    #[arg(long = "allow-aaguid", value_name = "UUID")]
    pub allow_aaguid: Vec<Uuid>,

    /// The RegistrationResponseJSON file, or - to read standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

/// The verdict printed on stdout. Fields that could not be determined are null.
#[derive(Debug, Default, Serialize)]
struct Verdict {
    verified: bool,
    format: Option<String>,
    attestation_type: Option<String>,
    aaguid: Option<String>,
    credential_id: Option<String>,
    trust_anchor: Option<String>,
    user_verified: Option<bool>,
    error: Option<String>,
}

/// Runs the command and returns the process exit code.
pub fn run(args: VerifyAttestationArgs) -> i32 {
    let (code, verdict) = evaluate(&args);
    match serde_json::to_string(&verdict) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: cannot print the verdict: {e}");
            return EXIT_UNUSABLE_INPUT;
        }
    }
    code
}

fn evaluate(args: &VerifyAttestationArgs) -> (i32, Verdict) {
    let unusable = |error: String| (EXIT_UNUSABLE_INPUT, Verdict { error: Some(error), ..Verdict::default() });
    let challenge = match b64url_decode(&args.challenge) {
        Ok(challenge) => challenge,
        Err(e) => return unusable(format!("--challenge: {e}")),
    };
    let trust = match load_trust_anchors(&args.trust_anchors) {
        Ok(trust) => trust,
        Err(e) => return unusable(e),
    };
    let input = match read_input(&args.file) {
        Ok(input) => input,
        Err(e) => return unusable(e),
    };
    let response = match RegistrationResponseJson::from_json(&input) {
        Ok(response) => response,
        Err(e) => return unusable(format!("{} is not a RegistrationResponseJSON: {e}", describe(&args.file))),
    };
    let expectation = RegistrationExpectation { rp_id: &args.rp_id, origin: &args.origin, challenge: &challenge };
    let at = args.at.unwrap_or_else(OffsetDateTime::now_utc);
    let verified = match verify_registration(&response, &expectation, &trust, at) {
        Ok(verified) => verified,
        Err(e) => {
            return (
                EXIT_REJECTED,
                Verdict { error: Some(format!("the registration is invalid: {e}")), ..Verdict::default() },
            );
        }
    };
    let attested = verified.is_attested(&args.allow_aaguid);
    let verdict = Verdict {
        verified: attested.is_ok(),
        format: Some(verified.format.as_str().to_owned()),
        attestation_type: Some(verified.attestation_type.as_str().to_owned()),
        aaguid: Some(verified.aaguid.to_string()),
        credential_id: Some(b64url_encode(&verified.credential_id)),
        trust_anchor: match &verified.trust {
            AttestationTrust::Trusted { anchor_subject } => Some(anchor_subject.clone()),
            _ => None,
        },
        user_verified: Some(verified.user_verified),
        error: attested.err(),
    };
    (if verdict.verified { EXIT_VERIFIED } else { EXIT_REJECTED }, verdict)
}

fn describe(path: &Path) -> String {
    if path == Path::new("-") { "standard input".to_owned() } else { path.display().to_string() }
}

fn read_input(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(MAX_INPUT_BYTES + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read {}: {e}", describe(path)))?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("{} is larger than {MAX_INPUT_BYTES} bytes", describe(path)));
    }
    Ok(text)
}

fn base64url_text(value: &str) -> Result<String, String> {
    b64url_decode(value).map(|_| value.to_owned()).map_err(|e| e.to_string())
}
