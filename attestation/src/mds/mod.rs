//! FIDO Metadata Service v3 (MDS3) BLOBs: verification of the signed JWS and a lenient reading
//! of its entries.
//!
//! The JWS is parsed and its signature checked by `jsonwebtoken` (never by hand); the signer's
//! `x5c` chain goes through the crate's own path builder ([`crate::chain`]) to the roots the
//! caller trusts, at the instant the caller gives. The hash comes from the header `alg`, never
//! from the signer certificate's own signature algorithm, which says how the certificate was
//! signed, not the BLOB (libraries that guessed from the certificate broke in 2026).

mod entries;
mod jws;
#[cfg(test)]
mod tests;

use ring::digest;
use time::{Date, OffsetDateTime};

pub use entries::{AuthenticatorStatus, MdsEntry, SkippedItem, StatusReport};

use crate::trust::TrustStore;

/// The production BLOB is over 10 MB and grows; this leaves room while refusing absurd input.
pub const MAX_BLOB_BYTES: usize = 64 * 1024 * 1024;

/// GlobalSign Root CA - R3: anchored the production BLOB until 2026-08-21 and still anchors
/// the R46 cross certificate carried in x5c. From Debian's ca-certificates 20230311+deb12u1.
pub const GLOBALSIGN_ROOT_CA_R3_PEM: &str = include_str!("roots/globalsign-root-ca-r3.pem");
/// GlobalSign Root R46: anchors the production BLOB since 2026-08-21.
pub const GLOBALSIGN_ROOT_R46_PEM: &str = include_str!("roots/globalsign-root-r46.pem");
/// SHA-256 of the DER of each shipped root, as GlobalSign and the Mozilla store publish them.
/// A changed file in the repository must not silently become a trust anchor.
pub const PRODUCTION_ROOT_PINS: [(&str, &str); 2] = [
    ("GlobalSign Root CA - R3", "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"),
    ("GlobalSign Root R46", "4fa3126d8d3a11d1c4855a4f807cbad6cf919d3a5a88b03bea2c6372d93c40c9"),
];

/// Why a BLOB was not accepted. `Invalid` is a verdict about a readable BLOB (it must not be
/// trusted); `Unusable` means the input is not an MDS3 BLOB at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unusable(String),
}

/// A BLOB whose signature and chain verified, with its entries read.
#[derive(Debug, Clone)]
pub struct MdsBlob {
    /// The BLOB's serial number; a newer BLOB always has a larger one.
    pub no: u64,
    /// `nextUpdate` as written (a date, "YYYY-MM-DD").
    pub next_update: String,
    /// `nextUpdate` parsed, when it is a real date.
    pub next_update_date: Option<Date>,
    /// The header `alg` the signature was checked with.
    pub alg: String,
    /// Subject of the trust anchor the signer's chain ended at.
    pub anchor: String,
    /// SHA-256 (hex) of the whole JWS as given, to name this BLOB in audit records.
    pub sha256: String,
    pub entries: Vec<MdsEntry>,
    /// Entries, or parts of entries, that could not be read, with why.
    pub skipped: Vec<SkippedItem>,
}

impl MdsBlob {
    /// Whether `nextUpdate` has not passed at `at` (an unreadable date counts as passed).
    pub fn is_fresh(&self, at: OffsetDateTime) -> bool {
        self.next_update_date.is_some_and(|d| d >= at.date())
    }

    /// Every distinct AAGUID with an entry, sorted.
    pub fn aaguids(&self) -> Vec<uuid::Uuid> {
        let mut ids: Vec<uuid::Uuid> = self.entries.iter().filter_map(|e| e.aaguid).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Entries with a compromise or revocation status in any report.
    pub fn compromised(&self) -> impl Iterator<Item = (&MdsEntry, &StatusReport)> {
        self.entries.iter().filter_map(|e| e.compromise().map(|r| (e, r)))
    }

    /// Entries whose user verification can be bypassed (by any report).
    pub fn uv_bypass(&self) -> impl Iterator<Item = (&MdsEntry, &StatusReport)> {
        self.entries.iter().filter_map(|e| e.uv_bypass().map(|r| (e, r)))
    }
}

/// The production roots (R3 and R46), checked against their pins.
pub fn production_roots() -> Result<TrustStore, String> {
    let mut store = TrustStore::new();
    for pem in [GLOBALSIGN_ROOT_CA_R3_PEM, GLOBALSIGN_ROOT_R46_PEM] {
        store.add_pem(pem).map_err(|e| format!("a shipped MDS root is unusable: {e}"))?;
    }
    for (summary, der) in store.anchors_with_der() {
        let fingerprint = hex::encode(digest::digest(&digest::SHA256, der).as_ref());
        if !PRODUCTION_ROOT_PINS.iter().any(|(_, pin)| *pin == fingerprint) {
            return Err(format!("the shipped MDS root \"{}\" does not match its pinned SHA-256", summary.subject));
        }
    }
    Ok(store)
}

/// Verifies an MDS3 BLOB (JWS compact serialisation) against `roots` at `at` and reads its
/// entries. Freshness (`nextUpdate`) is not part of the verdict: see [`MdsBlob::is_fresh`].
pub fn verify_blob(jws: &str, roots: &TrustStore, at: OffsetDateTime) -> Result<MdsBlob, MdsError> {
    if jws.len() > MAX_BLOB_BYTES {
        return Err(MdsError::Unusable(format!(
            "the BLOB is {} bytes, more than the {MAX_BLOB_BYTES}-byte limit",
            jws.len()
        )));
    }
    let jws = jws.trim();
    let verified = jws::verify(jws, roots, at)?;
    let payload = parse_payload(&verified.payload)?;
    Ok(MdsBlob {
        no: payload.no,
        next_update_date: entries::parse_date(&payload.next_update),
        next_update: payload.next_update,
        alg: verified.alg,
        anchor: verified.anchor,
        sha256: hex::encode(digest::digest(&digest::SHA256, jws.as_bytes()).as_ref()),
        entries: payload.entries,
        skipped: payload.skipped,
    })
}

/// The signed payload of a BLOB, read leniently.
#[derive(Debug, Clone)]
pub struct MdsPayload {
    pub no: u64,
    pub next_update: String,
    pub entries: Vec<MdsEntry>,
    pub skipped: Vec<SkippedItem>,
}

/// Reads a BLOB payload (JSON). Only [`verify_blob`] should feed it trusted input; it is
/// public for the fuzzer and for tools that inspect a payload already verified.
pub fn parse_payload(payload: &[u8]) -> Result<MdsPayload, MdsError> {
    let payload: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| MdsError::Unusable(format!("the BLOB's payload is not JSON ({e})")))?;
    let no = payload
        .get("no")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| MdsError::Unusable("the BLOB's payload has no numeric \"no\"".to_owned()))?;
    let next_update = payload
        .get("nextUpdate")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| MdsError::Unusable("the BLOB's payload has no \"nextUpdate\" date".to_owned()))?
        .to_owned();
    let list = payload
        .get("entries")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| MdsError::Unusable("the BLOB's payload has no \"entries\" list".to_owned()))?;
    let (entries, skipped) = entries::read_entries(list);
    Ok(MdsPayload { no, next_update, entries, skipped })
}
