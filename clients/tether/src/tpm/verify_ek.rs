//! `tether verify-ek`: checks a TPM endorsement-key certificate against TPM manufacturer roots.

use std::path::PathBuf;

use serde::Serialize;
use tether_attestation::tpm::ek::{read_certificates, verify_ek_certificate};
use time::OffsetDateTime;

use super::{EXIT_REJECTED, EXIT_UNUSABLE_INPUT, EXIT_VERIFIED, load_trust_anchors, print_json, read_file, rfc3339};

/// Verify a TPM EK certificate offline.
///
/// Checks that EKCERT chains to one of the TPM manufacturer roots in --trust-anchors (EK
/// certificates' critical subjectAltName with the TPM attributes is understood), that it is
/// an end-entity EK certificate, and reports the TPM manufacturer, model and firmware version
/// it names. Intermediate CA certificates may follow the EK certificate in a PEM EKCERT, or
/// be placed among the trust anchors. Prints one JSON object (verified, manufacturer, model,
/// firmware_version, chain, error). Exits 0 verified, 1 rejected, 2 usage errors or
/// unreadable input.
#[derive(Debug, clap::Args)]
pub struct VerifyEkArgs {
    /// A PEM file of TPM manufacturer root certificates, or a directory of *.pem / *.crt files.
    #[arg(long, value_name = "PATH")]
    pub trust_anchors: PathBuf,

    /// Evaluate certificate validity at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub at: Option<OffsetDateTime>,

    /// The EK certificate, DER (as read from TPM NV index 0x01c00002 / 0x01c0000a / 0x01c00016)
    /// or PEM (optionally followed by intermediate CA certificates).
    #[arg(value_name = "EKCERT")]
    pub ek_cert: PathBuf,
}

#[derive(Debug, Default, Serialize)]
struct Verdict {
    verified: bool,
    manufacturer: Option<String>,
    model: Option<String>,
    firmware_version: Option<String>,
    chain: Vec<String>,
    error: Option<String>,
}

/// Runs the command and returns the process exit code.
pub fn run(args: &VerifyEkArgs) -> i32 {
    let (code, verdict) = evaluate(args);
    print_json(&verdict, code)
}

fn evaluate(args: &VerifyEkArgs) -> (i32, Verdict) {
    let unusable = |error: String| (EXIT_UNUSABLE_INPUT, Verdict { error: Some(error), ..Verdict::default() });
    let trust = match load_trust_anchors(&args.trust_anchors) {
        Ok(trust) => trust,
        Err(e) => return unusable(e),
    };
    let input = match read_file(&args.ek_cert, "the EK certificate") {
        Ok(input) => input,
        Err(e) => return unusable(e),
    };
    let certs = match read_certificates(&input) {
        Ok(certs) => certs,
        Err(e) => return unusable(format!("{}: {e}", args.ek_cert.display())),
    };
    let Some((leaf, intermediates)) = certs.split_first() else {
        return unusable(format!("{} holds no certificate", args.ek_cert.display()));
    };
    let at = args.at.unwrap_or_else(OffsetDateTime::now_utc);
    match verify_ek_certificate(leaf, intermediates, &trust, at) {
        Ok(ek) => (
            EXIT_VERIFIED,
            Verdict {
                verified: true,
                manufacturer: ek.manufacturer,
                model: ek.model,
                firmware_version: ek.firmware_version,
                chain: ek.chain,
                error: None,
            },
        ),
        Err(e) => (EXIT_REJECTED, Verdict { error: Some(e.to_string()), ..Verdict::default() }),
    }
}
