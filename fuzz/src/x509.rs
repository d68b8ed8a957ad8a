//! X.509 targets: attestation chains (x5c) through the path builder, and trust-store input
//! (PEM bundles and DER certificates).

use std::sync::OnceLock;

use tether_attestation::chain::{MAX_CHAIN_LEN, validate_chain};
use tether_attestation::trust::TrustStore;
use x509_parser::prelude::FromDer;

use crate::fixtures::{self, AT};
use crate::frame::split_all;

/// The TBSCertificate of a DER certificate (empty when it does not parse).
pub fn tbs(der: &[u8]) -> Vec<u8> {
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok((_, cert)) => cert.tbs_certificate.as_ref().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Both fixture roots: the soft authenticator's (ECDSA P-384) and swtpm's (RSA-3072).
fn anchors() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut store = fixtures::webauthn_trust().clone();
        for (_, der) in fixtures::ek_trust().anchors_with_der() {
            if let Err(e) = store.add_der(der) {
                panic!("fixture root does not load: {e}");
            }
        }
        store
    })
}

/// Input = length-prefixed DER certificates, leaf first. A chain validates only if it
/// ends at a fixture root and its leaf is a certificate we issued; oversized chains are
/// refused before any parsing.
pub fn chain(data: &[u8]) {
    let x5c = split_all(data, MAX_CHAIN_LEN + 1);
    let result = validate_chain(&x5c, anchors(), AT);
    if x5c.is_empty() || x5c.len() > MAX_CHAIN_LEN {
        assert!(result.is_err(), "empty or oversized chain accepted");
    }
    let Ok(anchor) = result else { return };
    assert!(anchors().anchors().any(|a| a.subject == anchor), "the chain ends at an anchor");
    assert!(x5c.first().is_some_and(|leaf| fixtures::listed(fixtures::KNOWN_TBS, &tbs(leaf))), "forged chain");
}

/// A trust-store file: PEM is all-or-nothing, duplicates are stored once, and DER input is
/// one certificate.
pub fn trust_store(data: &[u8]) {
    let mut store = TrustStore::new();
    if let Ok(text) = std::str::from_utf8(data) {
        match store.add_pem(text) {
            Ok(count) => {
                assert!(count > 0 && store.len() <= count);
                let before = store.len();
                assert_eq!(store.add_pem(text), Ok(count));
                assert_eq!(store.len(), before, "re-adding stores duplicates once");
            }
            Err(_) => assert!(store.is_empty(), "a refused bundle added anchors"),
        }
    }
    let mut store = TrustStore::new();
    match store.add_der(data) {
        Ok(()) => {
            assert_eq!(store.len(), 1);
            let summary = store.anchors().next().map(|a| a.sha256_fingerprint.clone());
            let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, data));
            assert_eq!(summary, Some(digest));
        }
        Err(_) => assert!(store.is_empty()),
    }
}
