//! The shipped TPM manufacturer bundle: every certificate parses and matches the manifest, and
//! the real EK certificates of ../shared/conformance/tpm verify with the bundle alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use tether_attestation::tpm::bundle;
use tether_attestation::tpm::ek::{read_certificates, verify_ek_certificate};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn manifest() -> Value {
    serde_json::from_str(bundle::MANIFEST_JSON).expect("manifest JSON")
}

#[test]
fn every_certificate_parses_and_matches_the_manifest() {
    let manifest = manifest();
    let listed: BTreeMap<String, Value> = manifest["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .map(|c| (c["file"].as_str().expect("file").to_owned(), c.clone()))
        .collect();
    let shipped: BTreeSet<String> = bundle::certificates().iter().map(|c| c.file.to_owned()).collect();
    assert_eq!(shipped, listed.keys().cloned().collect(), "the manifest lists exactly the shipped files");
    for cert in bundle::certificates() {
        let entry = &listed[cert.file];
        assert_eq!(entry["vendor"], cert.vendor, "{}", cert.file);
        assert_eq!(bundle::sha256(cert).expect("hash"), entry["sha256"].as_str().expect("sha256"), "{}", cert.file);
        let source = &entry["source"];
        for field in ["repo", "commit", "path", "licence"] {
            assert!(source[field].as_str().is_some_and(|s| !s.is_empty()), "{}: source.{field}", cert.file);
        }
        let mut store = tether_attestation::trust::TrustStore::new();
        assert_eq!(store.add_pem(cert.pem), Ok(1), "{} is one certificate that parses", cert.file);
    }
    for vendor in bundle::VENDORS {
        let store = bundle::trust_store(Some(vendor)).expect("vendor store");
        assert!(!store.is_empty(), "{vendor} has certificates");
    }
    assert_eq!(bundle::trust_store(None).expect("all").len(), bundle::certificates().len());
    assert!(bundle::pem(Some("acme")).unwrap_err().contains("unknown TPM vendor"));
}

/// Manufacturer names in the EK sidecars → bundle vendor ids.
fn vendor_id(name: &str) -> Option<&'static str> {
    match name {
        n if n.starts_with("Infineon") => Some("ifx"),
        n if n.starts_with("Intel") => Some("intc"),
        n if n.starts_with("Nuvoton") => Some("ntc"),
        n if n.starts_with("STMicro") => Some("stm"),
        _ => None,
    }
}

#[test]
fn real_ek_certificates_verify_with_the_bundle_alone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/tpm/ek");
    if !dir.is_dir() {
        eprintln!("NOTICE: {} is absent; skipping the TPM bundle EK test", dir.display());
        return;
    }
    let everything = bundle::trust_store(None).expect("bundle");
    let mut verified: BTreeMap<&str, usize> = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir).expect("read").filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
        let item: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let Some(vendor) = item["vendor"].as_str().and_then(vendor_id) else { continue };
        if item["expected"] != "verified" {
            continue;
        }
        let der = std::fs::read(path.with_extension("der")).expect("EK DER");
        let certs = read_certificates(&der).expect("EK certificate");
        let at = OffsetDateTime::parse(item["verify_at"].as_str().expect("verify_at"), &Rfc3339).expect("at");
        let name = path.display().to_string();
        // The EK alone, without the intermediates it came with: the bundle must supply them.
        let no_intermediates: [&[u8]; 0] = [];
        match verify_ek_certificate(&certs[0], &no_intermediates, &everything, at) {
            Ok(_) => *verified.entry(vendor).or_default() += 1,
            Err(e) => {
                // TPM 1.2 EKs are SHA-1 signed with OAEP keys; refusing them is an accepted outcome.
                let alternatives = item["acceptable_alternatives"].as_array().map_or(0, Vec::len);
                assert!(alternatives > 0, "{name}: {e}");
                continue;
            }
        }
        let others = bundle::VENDORS.iter().filter(|v| **v != vendor).copied().collect::<Vec<_>>();
        for other in others {
            let store = bundle::trust_store(Some(other)).expect("store");
            assert!(
                verify_ek_certificate(&certs[0], &no_intermediates, &store, at).is_err(),
                "{name} must not verify with the {other} bundle"
            );
        }
    }
    eprintln!("EK certificates verified with the bundle alone, per vendor: {verified:?}");
    for vendor in ["ifx", "intc", "ntc", "stm"] {
        assert!(verified.get(vendor).is_some_and(|n| *n > 0), "no {vendor} EK verified: {verified:?}");
    }
}
