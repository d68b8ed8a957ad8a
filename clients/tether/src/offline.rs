//! Helpers shared by the offline verification commands (verify-attestation,
//! verify-ek, verify-quote).

use std::path::{Path, PathBuf};

use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn rfc3339(value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-02-02T10:00:00Z ({e})"))
}

/// A PEM file, or every *.pem / *.crt file of a directory (other files are ignored).
pub fn load_trust_anchors(path: &Path) -> Result<TrustStore, String> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read the trust anchor directory {}: {e}", path.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| x.eq_ignore_ascii_case("pem") || x.eq_ignore_ascii_case("crt"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("the trust anchor directory {} has no *.pem or *.crt files", path.display()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut trust = TrustStore::new();
    for file in files {
        let pem = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read the trust anchors in {}: {e}", file.display()))?;
        trust.add_pem(&pem).map_err(|e| format!("the trust anchors in {} are unusable: {e}", file.display()))?;
    }
    Ok(trust)
}
