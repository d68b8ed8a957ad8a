//! FIDO MDS3 BLOBs: the JWS layer against the shipped production roots, and the lenient
//! payload reader on its own (after a valid signature it reads whatever the signer wrote).

use tether_attestation::mds::{MdsError, PRODUCTION_ROOT_PINS, parse_payload, production_roots, verify_blob};
use time::macros::datetime;

/// First byte 0: the rest is a payload (JSON). Otherwise the whole input is a JWS checked
/// against the production roots at a fixed instant: nothing a fuzzer writes may verify,
/// and what does verify must end at a pinned root.
pub fn mds_blob(data: &[u8]) {
    match data.split_first() {
        Some((0, payload)) => payload_properties(payload),
        _ => {
            let Ok(text) = std::str::from_utf8(data) else { return };
            let Ok(roots) = production_roots() else { panic!("the shipped MDS roots no longer match their pins") };
            match verify_blob(text, &roots, datetime!(2022-02-15 00:00 UTC)) {
                Ok(blob) => {
                    let pinned =
                        PRODUCTION_ROOT_PINS.iter().any(|(name, _)| blob.anchor.contains(&name[name.len() - 3..]));
                    assert!(pinned, "a BLOB verified under a root that is not pinned: {}", blob.anchor);
                }
                Err(MdsError::Invalid(reason) | MdsError::Unusable(reason)) => assert!(!reason.is_empty()),
            }
        }
    }
}

fn payload_properties(payload: &[u8]) {
    let Ok(read) = parse_payload(payload) else { return };
    let dropped = read.skipped.iter().filter(|s| s.part == "entry").count();
    let listed = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("entries").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0);
    assert_eq!(read.entries.len() + dropped, listed, "every entry is either read or reported");
    for entry in &read.entries {
        assert!(!entry.status_reports.is_empty(), "an entry without statuses was kept");
        if let Some(report) = entry.compromise() {
            assert!(report.is_compromise());
        }
        assert!(entry.current_status().is_some());
    }
}
