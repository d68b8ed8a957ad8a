//! MDS3 BLOBs of ../shared/conformance/mds read by the library: every entry's current status
//! must be the one with the latest effectiveDate (real BLOBs list reports out of order).

use std::path::Path;

use serde_json::Value;
use tether_attestation::mds::verify_blob;
use tether_attestation::trust::TrustStore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[test]
fn current_status_is_the_latest_effective_date_in_every_shared_blob() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/mds");
    if !dir.is_dir() {
        eprintln!("NOTICE: {} is absent; skipping the MDS3 status test", dir.display());
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".expected.json"))
        else {
            continue;
        };
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let mut roots = TrustStore::new();
        for root in expected["root_files"].as_array().expect("root_files") {
            let pem = std::fs::read_to_string(dir.join(root.as_str().expect("root"))).expect("read root");
            roots.add_pem(&pem).expect("root");
        }
        let at = OffsetDateTime::parse(expected["verify_at"].as_str().expect("verify_at"), &Rfc3339).expect("at");
        let jws = std::fs::read_to_string(dir.join(format!("{name}.jwt"))).expect("read blob");
        let blob = verify_blob(&jws, &roots, at).unwrap_or_else(|e| panic!("{name}: {e}"));
        let wanted = expected["payload"]["entries"].as_array().expect("entries");
        assert_eq!(blob.entries.len(), wanted.len(), "{name}");
        for (entry, want) in blob.entries.iter().zip(wanted) {
            let current = entry.current_status().map(|r| r.status.as_str());
            assert_eq!(current, want["latest_status"].as_str(), "{name}: entry {}", entry.id());
            checked += 1;
        }
    }
    assert!(checked > 500, "all five BLOBs were read ({checked} entries)");
}
