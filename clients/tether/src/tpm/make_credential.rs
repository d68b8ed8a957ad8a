//! `tether tpm make-credential`: the server's MakeCredential as a command, writing the
//! `tpm2_makecredential -o` file format so `tpm2_activatecredential` can consume it.

use std::path::PathBuf;

use serde::Serialize;
use tether_attestation::tpm::credential::make_credential;
use tether_attestation::tpm::{SystemRng, TpmPublic};

use super::{EXIT_REJECTED, EXIT_UNUSABLE_INPUT, EXIT_VERIFIED, Hex, hex_arg, print_json, read_file};

/// Make a credential for a TPM's EK and an AK name (TPM2_MakeCredential in software).
///
/// Encrypts SECRET so that only the TPM holding the EK can recover it, and only for the
/// object named --ak-name. Uses the EK's name algorithm and symmetric key size. Writes
/// --output in the `tpm2_makecredential -o` format and prints one JSON summary. Exits 0 on
/// success, 1 when the EK, AK name or secret is not acceptable, 2 for usage errors or
/// unreadable input.
#[derive(Debug, clap::Parser)]
#[command(name = "tether tpm make-credential")]
pub struct MakeCredentialArgs {
    /// The EK public area: TPM2B_PUBLIC (`tpm2_readpublic -o`, `tpm2_createek -u`) or TPMT_PUBLIC.
    #[arg(long, value_name = "EKPUB")]
    pub ek: PathBuf,

    /// The AK's name (nameAlg ‖ digest, `tpm2_createak -n` / `tpm2_readpublic -n`), hex.
    #[arg(long, value_name = "HEX", value_parser = hex_arg)]
    pub ak_name: Hex,

    /// The secret to protect (1 to the EK name algorithm's digest size, e.g. 32 bytes).
    #[arg(long, value_name = "FILE")]
    pub secret: PathBuf,

    /// Where to write the credential blob.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    written: bool,
    output: Option<String>,
    ek_key: Option<String>,
    name_alg: Option<String>,
    error: Option<String>,
}

/// Runs the command and returns the process exit code.
pub fn run(args: &MakeCredentialArgs) -> i32 {
    let (code, summary) = evaluate(args);
    if let Some(error) = &summary.error {
        eprintln!("error: {error}");
    }
    print_json(&summary, code)
}

fn evaluate(args: &MakeCredentialArgs) -> (i32, Summary) {
    let fail = |code: i32, error: String| (code, Summary { error: Some(error), ..Summary::default() });
    let ek_bytes = match read_file(&args.ek, "the EK public area") {
        Ok(bytes) => bytes,
        Err(e) => return fail(EXIT_UNUSABLE_INPUT, e),
    };
    let secret = match read_file(&args.secret, "the secret") {
        Ok(bytes) => bytes,
        Err(e) => return fail(EXIT_UNUSABLE_INPUT, e),
    };
    let ek = match TpmPublic::parse(&ek_bytes) {
        Ok(ek) => ek,
        Err(e) => return fail(EXIT_UNUSABLE_INPUT, format!("{}: {e}", args.ek.display())),
    };
    let blob = make_credential(&ek, &args.ak_name.0, &secret, &mut SystemRng::new())
        .map_err(|e| e.to_string())
        .and_then(|credential| credential.to_tpm2_tools().map_err(|e| e.to_string()));
    let blob = match blob {
        Ok(blob) => blob,
        Err(e) => return fail(EXIT_REJECTED, e),
    };
    if let Err(e) = std::fs::write(&args.output, blob) {
        return fail(EXIT_UNUSABLE_INPUT, format!("cannot write {}: {e}", args.output.display()));
    }
    let summary = Summary {
        written: true,
        output: Some(args.output.display().to_string()),
        ek_key: Some(ek.key.describe()),
        name_alg: Some(ek.name_alg.to_string()),
        error: None,
    };
    (EXIT_VERIFIED, summary)
}
