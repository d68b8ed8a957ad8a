//! `tether verify-mds`: verifies a FIDO Metadata Service v3 BLOB offline and prints one JSON
//! verdict: exit 0 valid, 1 invalid (signature, algorithm, chain or validity), 2 unusable input.

use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;
use tether_attestation::mds::{self, MdsBlob, MdsEntry, MdsError, StatusReport};
use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;

use crate::offline::{load_trust_anchors, rfc3339};

const EXIT_VERIFIED: i32 = 0;
const EXIT_REJECTED: i32 = 1;
const EXIT_UNUSABLE_INPUT: i32 = 2;

/// Verify a FIDO MDS3 BLOB offline.
///
/// Checks the JWS signature with the algorithm its header names (alg none and symmetric
/// algorithms are refused), and the x5c signer chain against the roots at --at. Without
/// --roots the shipped, pinned production roots (GlobalSign Root CA - R3 and Root R46) are
/// used. Prints one JSON object (verified, no, next_update, fresh, entries, aaguids,
/// compromised, uv_bypass, skipped, error). Exits 0 valid, 1 invalid, 2 unusable input.
#[derive(Debug, clap::Args)]
pub struct VerifyMdsArgs {
    /// A PEM file of MDS root certificates, or a directory of *.pem / *.crt files; repeat to
    /// trust several. Default: the production roots shipped with tether.
    #[arg(long = "roots", value_name = "PEM")]
    pub roots: Vec<PathBuf>,

    /// Evaluate certificate validity (and freshness) at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub at: Option<OffsetDateTime>,

    /// The BLOB (JWS compact serialisation), as downloaded from the metadata service.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Default, Serialize)]
struct Verdict {
    verified: bool,
    no: Option<u64>,
    next_update: Option<String>,
    /// Whether nextUpdate has not passed at the verification instant.
    fresh: Option<bool>,
    alg: Option<String>,
    anchor: Option<String>,
    sha256: Option<String>,
    entries: usize,
    aaguids: Vec<String>,
    compromised: Vec<Listed>,
    uv_bypass: Vec<Listed>,
    skipped: Vec<Skipped>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listed {
    /// "aaguid", "aaid" or "key_id".
    kind: &'static str,
    id: String,
    status: String,
    effective_date: Option<String>,
    /// For bypass reports: the firmware version the report names, when it names one.
    authenticator_version: Option<u64>,
    description: Option<String>,
}

#[derive(Debug, Serialize)]
struct Skipped {
    index: usize,
    id: Option<String>,
    part: String,
    reason: String,
}

/// Runs the command and returns the process exit code.
pub fn run(args: &VerifyMdsArgs) -> i32 {
    let (code, verdict) = evaluate(args);
    match serde_json::to_string(&verdict) {
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

fn roots(paths: &[PathBuf]) -> Result<TrustStore, String> {
    if paths.is_empty() {
        return mds::production_roots();
    }
    let mut store = TrustStore::new();
    for path in paths {
        for (_, der) in load_trust_anchors(path)?.anchors_with_der() {
            store.add_der(der).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(store)
}

fn read_blob(path: &PathBuf) -> Result<String, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(mds::MAX_BLOB_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the BLOB {}: {e}", path.display()))?;
    if bytes.len() > mds::MAX_BLOB_BYTES {
        return Err(format!("the BLOB {} is larger than {} bytes", path.display(), mds::MAX_BLOB_BYTES));
    }
    String::from_utf8(bytes).map_err(|_| format!("the BLOB {} is not text (a JWS is ASCII)", path.display()))
}

fn evaluate(args: &VerifyMdsArgs) -> (i32, Verdict) {
    let unusable = |error: String| (EXIT_UNUSABLE_INPUT, Verdict { error: Some(error), ..Verdict::default() });
    let trust = match roots(&args.roots) {
        Ok(trust) => trust,
        Err(e) => return unusable(e),
    };
    let jws = match read_blob(&args.file) {
        Ok(jws) => jws,
        Err(e) => return unusable(e),
    };
    let at = args.at.unwrap_or_else(OffsetDateTime::now_utc);
    match mds::verify_blob(&jws, &trust, at) {
        Ok(blob) => (EXIT_VERIFIED, verdict(&blob, at)),
        Err(MdsError::Invalid(e)) => (EXIT_REJECTED, Verdict { error: Some(e), ..Verdict::default() }),
        Err(MdsError::Unusable(e)) => unusable(e),
    }
}

fn verdict(blob: &MdsBlob, at: OffsetDateTime) -> Verdict {
    Verdict {
        verified: true,
        no: Some(blob.no),
        next_update: Some(blob.next_update.clone()),
        fresh: Some(blob.is_fresh(at)),
        alg: Some(blob.alg.clone()),
        anchor: Some(blob.anchor.clone()),
        sha256: Some(blob.sha256.clone()),
        entries: blob.entries.len(),
        aaguids: blob.aaguids().iter().map(ToString::to_string).collect(),
        compromised: blob.compromised().flat_map(|(e, r)| listed(e, r)).collect(),
        uv_bypass: blob.uv_bypass().flat_map(|(e, r)| listed(e, r)).collect(),
        skipped: blob
            .skipped
            .iter()
            .map(|s| Skipped { index: s.index, id: s.id.clone(), part: s.part.clone(), reason: s.reason.clone() })
            .collect(),
        error: None,
    }
}

/// One line per identifier of the entry: an AAGUID, an AAID, and each U2F batch key id.
fn listed(entry: &MdsEntry, report: &StatusReport) -> Vec<Listed> {
    let ids = entry
        .aaguid
        .map(|a| ("aaguid", a.to_string()))
        .into_iter()
        .chain(entry.aaid.clone().map(|a| ("aaid", a)))
        .chain(entry.key_ids.iter().map(|k| ("key_id", k.clone())));
    ids.map(|(kind, id)| Listed {
        kind,
        id,
        status: report.status.clone(),
        effective_date: report.effective_date.clone(),
        authenticator_version: report.authenticator_version,
        description: entry.description.clone(),
    })
    .collect()
}
