//! Offline TPM 2.0 tools: `tether verify-ek`, `tether verify-quote` and
//! `tether tpm make-credential`. They read the standard TPM wire formats (and tpm2-tools'
//! files), so the output of any TPM stack can be checked without a server.

pub mod make_credential;
pub mod verify_ek;
pub mod verify_quote;

use std::io::Read;
use std::path::Path;

use serde::Serialize;

pub use crate::offline::{load_trust_anchors, rfc3339};

pub const EXIT_VERIFIED: i32 = 0;
pub const EXIT_REJECTED: i32 = 1;
pub const EXIT_UNUSABLE_INPUT: i32 = 2;
/// TPM structures and certificates are a few KiB; this guards against reading something huge.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// TPM tools that work offline: `tether tpm make-credential --ek EKPUB --ak-name HEX
/// --secret FILE --output FILE` (see `tether tpm make-credential --help`).
///
/// The tool's arguments are parsed on their own because its `--output FILE` (the contract
/// `tpm2_makecredential` users expect) would otherwise collide with the global `--output`.
#[derive(Debug, clap::Subcommand)]
pub enum TpmCommand {
    #[command(external_subcommand)]
    Tool(Vec<String>),
}

/// Runs a `tether tpm` command and returns the process exit code.
pub fn run(command: TpmCommand) -> i32 {
    let TpmCommand::Tool(args) = command;
    match args.split_first() {
        Some((name, rest)) if name == "make-credential" => {
            let argv = std::iter::once("tether tpm make-credential".to_owned()).chain(rest.iter().cloned());
            match <make_credential::MakeCredentialArgs as clap::Parser>::try_parse_from(argv) {
                Ok(parsed) => make_credential::run(&parsed),
                Err(e) => {
                    let _ = e.print();
                    if e.use_stderr() { EXIT_UNUSABLE_INPUT } else { EXIT_VERIFIED }
                }
            }
        }
        Some((name, _)) => {
            eprintln!("error: unknown command `tether tpm {name}`; the TPM tools are: make-credential");
            EXIT_UNUSABLE_INPUT
        }
        None => {
            eprintln!("error: name a TPM tool: tether tpm make-credential --help");
            EXIT_UNUSABLE_INPUT
        }
    }
}

/// Reads a whole file (at most 1 MiB).
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("{what} {} is larger than {MAX_INPUT_BYTES} bytes", path.display()));
    }
    Ok(bytes)
}

/// Prints one JSON object on stdout and returns `code` (2 if printing fails).
pub fn print_json<T: Serialize>(value: &T, code: i32) -> i32 {
    match serde_json::to_string(value) {
        Ok(json) => {
            println!("{json}");
            code
        }
        Err(e) => {
            eprintln!("error: cannot print the verdict: {e}");
            EXIT_UNUSABLE_INPUT
        }
    }
}

/// Bytes given in hex on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

/// Parses a hex command-line value.
pub fn hex_arg(value: &str) -> Result<Hex, String> {
    hex_bytes(value).map(Hex)
}

/// Hex (upper or lower case, optional 0x prefix) to bytes.
pub fn hex_bytes(value: &str) -> Result<Vec<u8>, String> {
    let digits = value.strip_prefix("0x").unwrap_or(value);
    if !digits.len().is_multiple_of(2) {
        return Err("expected an even number of hex digits".to_owned());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("\"{value}\" is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::hex_bytes;

    #[test]
    fn hex_arguments_parse() {
        assert_eq!(hex_bytes("0x00ff10").ok(), Some(vec![0, 255, 16]));
        assert_eq!(hex_bytes("ABcd").ok(), Some(vec![0xab, 0xcd]));
        assert_eq!(hex_bytes("").ok(), Some(vec![]));
        assert!(hex_bytes("abc").is_err());
        assert!(hex_bytes("zz").is_err());
        assert!(hex_bytes("é1").is_err());
    }
}
