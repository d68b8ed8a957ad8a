//! `tether verify-quote`: checks a TPM2_Quote (as `tpm2_quote -m/-s/-o` write it) against an
//! attestation key, a nonce and PCR values.

use std::path::PathBuf;

use serde::Serialize;
use tether_attestation::tpm::ak::check_ak_attributes;
use tether_attestation::tpm::pcr::PcrValues;
use tether_attestation::tpm::quote::{verify_quote, verify_quote_with_key};
use tether_attestation::tpm::{Attest, AttestInfo, PublicKey, TpmPublic, TpmSignature};

use super::{EXIT_REJECTED, EXIT_UNUSABLE_INPUT, EXIT_VERIFIED, print_json, read_file};

/// Verify a TPM quote offline.
///
/// Checks that MESSAGE is a TPM-generated TPMS_ATTEST of type quote (TPM_GENERATED magic),
/// that the AK signed it (RSASSA, RSAPSS or ECDSA), that its extraData is the nonce, and —
/// with --pcrs or --pcr-values — that the PCR values hash to the quoted PCR digest. An AK
/// given as TPM2B_PUBLIC must also be a restricted, fixedTPM, fixedParent,
/// sensitiveDataOrigin signing key. Prints one JSON object (verified, nonce_matches,
/// pcr_digest_matches, clock, reset_count, restart_count, firmware_version, error); the clock
/// fields are printed only for a verified quote. Exits 0 verified, 1 rejected, 2 usage errors
/// or unreadable input.
#[derive(Debug, clap::Args)]
pub struct VerifyQuoteArgs {
    /// The attestation key: TPM2B_PUBLIC (as `tpm2_createak -u` writes it) or a PEM public key.
    #[arg(long, value_name = "AKPUB")]
    pub ak: PathBuf,

    /// The nonce the quote must carry in extraData (`tpm2_quote -q`), hex.
    #[arg(long, value_name = "HEX", value_parser = super::hex_arg)]
    pub nonce: super::Hex,

    /// The marshalled TPMS_ATTEST (`tpm2_quote -m`).
    #[arg(long, value_name = "FILE")]
    pub message: PathBuf,

    /// The TPMT_SIGNATURE (`tpm2_quote -s`, default tss format).
    #[arg(long, value_name = "FILE")]
    pub signature: PathBuf,

    /// The PCR file `tpm2_quote -o` writes (selection and values).
    #[arg(long, value_name = "FILE")]
    pub pcrs: Option<PathBuf>,

    /// The quoted PCRs' values concatenated in selection order (`tpm2_pcrread -o`).
    #[arg(long, value_name = "FILE")]
    pub pcr_values: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Verdict {
    verified: bool,
    nonce_matches: Option<bool>,
    pcr_digest_matches: Option<bool>,
    clock: Option<u64>,
    reset_count: Option<u32>,
    restart_count: Option<u32>,
    /// 16 hex digits, as tpm2_print shows firmwareVersion.
    firmware_version: Option<String>,
    error: Option<String>,
}

enum Ak {
    Tpm(TpmPublic),
    Key(PublicKey),
}

/// Runs the command and returns the process exit code.
pub fn run(args: &VerifyQuoteArgs) -> i32 {
    let (code, verdict) = match evaluate(args) {
        Ok(result) => result,
        Err(error) => (EXIT_UNUSABLE_INPUT, Verdict { error: Some(error), ..Verdict::default() }),
    };
    print_json(&verdict, code)
}

fn read_ak(args: &VerifyQuoteArgs) -> Result<Ak, String> {
    let bytes = read_file(&args.ak, "the attestation key")?;
    let path = args.ak.display();
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 PEM"))?;
        PublicKey::from_pem(&text).map(Ak::Key).map_err(|e| format!("{path}: {e}"))
    } else {
        TpmPublic::parse(&bytes).map(Ak::Tpm).map_err(|e| format!("{path}: {e}"))
    }
}

fn evaluate(args: &VerifyQuoteArgs) -> Result<(i32, Verdict), String> {
    let ak = read_ak(args)?;
    let message = read_file(&args.message, "the quote message")?;
    let signature = read_file(&args.signature, "the quote signature")?;
    let pcr_file = args.pcrs.as_ref().map(|p| read_file(p, "the PCR file")).transpose()?;
    let pcr_values_file = args.pcr_values.as_ref().map(|p| read_file(p, "the PCR values file")).transpose()?;

    let mut verdict = Verdict::default();
    let reject = |mut verdict: Verdict, error: String| {
        verdict.error = Some(error);
        Ok((EXIT_REJECTED, verdict))
    };
    let attest = Attest::parse(&message).ok();
    verdict.nonce_matches = attest.as_ref().map(|a| a.extra_data == args.nonce.0);
    let selection = match attest.as_ref().map(|a| &a.info) {
        Some(AttestInfo::Quote { selection, .. }) => Some(selection.as_slice()),
        _ => None,
    };
    let from_file = pcr_file.map(|file| PcrValues::from_tpm2_tools(&file));
    let from_values = match (pcr_values_file, selection) {
        (Some(file), Some(selection)) => Some(PcrValues::from_concatenated(&file, selection)),
        _ => None,
    };
    let (from_file, from_values) = match (from_file.transpose(), from_values.transpose()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return reject(verdict, e.to_string()),
    };
    if let (Some(a), Some(b)) = (&from_file, &from_values)
        && a != b
    {
        verdict.pcr_digest_matches = Some(false);
        return reject(verdict, "the --pcr-values differ from the values in the --pcrs file".to_owned());
    }
    let pcrs = from_file.or(from_values);
    verdict.pcr_digest_matches = pcr_digest_matches(attest.as_ref(), &signature, pcrs.as_ref());

    let result = match &ak {
        Ak::Tpm(public) => {
            if let Err(e) = check_ak_attributes(public) {
                return reject(verdict, e.to_string());
            }
            verify_quote(public, &message, &signature, &args.nonce.0, pcrs.as_ref())
        }
        Ak::Key(key) => verify_quote_with_key(key, &message, &signature, &args.nonce.0, pcrs.as_ref()),
    };
    match result {
        Ok(quote) => {
            verdict.verified = true;
            verdict.clock = Some(quote.clock_info.clock);
            verdict.reset_count = Some(quote.clock_info.reset_count);
            verdict.restart_count = Some(quote.clock_info.restart_count);
            verdict.firmware_version = Some(format!("{:016x}", quote.firmware_version));
            Ok((EXIT_VERIFIED, verdict))
        }
        Err(e) => reject(verdict, e.to_string()),
    }
}

/// Whether the values hash to the quoted digest (null when there is nothing to compare).
fn pcr_digest_matches(attest: Option<&Attest>, signature: &[u8], pcrs: Option<&PcrValues>) -> Option<bool> {
    let pcrs = pcrs?;
    let AttestInfo::Quote { selection, pcr_digest } = &attest?.info else {
        return None;
    };
    let hash = TpmSignature::parse(signature).ok()?.hash();
    Some(pcrs.covers(selection) && pcrs.digest(hash) == *pcr_digest)
}
