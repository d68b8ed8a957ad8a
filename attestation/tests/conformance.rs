//! Real-device vectors from `shared/conformance/webauthn` (read in place, never copied).
//! Skipped with a notice when that folder is absent.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tether_attestation::assertion::{AssertionExpectation, verify_assertion};
use tether_attestation::json::{AuthenticationResponseJson, RegistrationResponseJson};
use tether_attestation::registration::{
    AttestationTrust, RegistrationExpectation, VerifiedRegistration, verify_registration,
};
use tether_attestation::trust::TrustStore;
use tether_attestation::{b64url_decode, b64url_encode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct Vector {
    name: String,
    raw: Value,
    response: RegistrationResponseJson,
    trust: TrustStore,
    at: OffsetDateTime,
    rp_id: String,
    origin: String,
    challenge: Vec<u8>,
}

fn vectors_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/webauthn");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("NOTICE: {} is absent; skipping the real-device conformance vectors", dir.display());
        None
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("vector lacks {key}"))
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}

/// The vector's own `verify_at`, else the upstream test clock, else the middle of the window in
/// which every x5c certificate is valid (several chains have expired since they were recorded).
fn verification_time(raw: &Value) -> OffsetDateTime {
    if let Some(at) = raw.get("verify_at").and_then(Value::as_str) {
        return parse_time(at);
    }
    if let Some(clock) = raw.get("upstream_test_clock").and_then(Value::as_str) {
        return parse_time(clock);
    }
    let certs = raw["parsed"].get("x5c").and_then(Value::as_array).cloned().unwrap_or_default();
    if certs.is_empty() {
        return OffsetDateTime::now_utc();
    }
    let start = certs.iter().map(|c| parse_time(str_field(c, "not_before"))).max();
    let end = certs.iter().map(|c| parse_time(str_field(c, "not_after"))).min();
    match (start, end) {
        (Some(start), Some(end)) => start + (end - start) / 2,
        _ => OffsetDateTime::now_utc(),
    }
}

fn load_all() -> Vec<Vector> {
    let Some(dir) = vectors_dir() else { return Vec::new() };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("read vectors dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let raw: Value =
                serde_json::from_str(&std::fs::read_to_string(path).expect("read vector")).expect("vector JSON");
            let response = RegistrationResponseJson::from_json(&raw["registration_response"].to_string())
                .expect("registration_response parses");
            let mut trust = TrustStore::new();
            for root in raw["root_ca_files"].as_array().cloned().unwrap_or_default() {
                let pem = std::fs::read_to_string(dir.join(root.as_str().expect("root path"))).expect("read root");
                trust.add_pem(&pem).expect("root PEM");
            }
            Vector {
                name: str_field(&raw, "name").to_owned(),
                at: verification_time(&raw),
                rp_id: str_field(&raw, "rp_id").to_owned(),
                origin: str_field(&raw, "expected_origin").to_owned(),
                challenge: b64url_decode(str_field(&raw, "expected_challenge_b64url")).expect("challenge"),
                response,
                trust,
                raw,
            }
        })
        .collect()
}

impl Vector {
    fn verify(
        &self,
        response: &RegistrationResponseJson,
    ) -> Result<VerifiedRegistration, tether_attestation::registration::RegistrationError> {
        let expect = RegistrationExpectation { rp_id: &self.rp_id, origin: &self.origin, challenge: &self.challenge };
        verify_registration(response, &expect, &self.trust, self.at)
    }

    fn is_real(&self) -> bool {
        self.raw["real_device"].as_bool() == Some(true)
    }

    fn format(&self) -> &str {
        str_field(&self.raw, "format")
    }
}

impl Vector {
    /// The verdict the vector states (`verified`, `unattested`, `rejected`); the first set
    /// states none, and its README gives the rule instead (see `expected_trusted`).
    fn expected_verdict(&self) -> Option<&str> {
        self.raw.get("expected").and_then(|e| e.get("verdict")).and_then(Value::as_str)
    }
}

fn expected_trusted(v: &Vector) -> bool {
    match v.expected_verdict() {
        Some(verdict) => verdict == "verified",
        // Real Windows Hello TPM vectors included: they sign with RS1, which real devices use.
        None => v.is_real() && !matches!(v.format(), "none" | "android-safetynet"),
    }
}

/// Vectors whose stated verdict Tether deliberately does not reach, each with the verdict it
/// reaches instead and why. Both directions fail closed: these are refusals of valid input.
const KNOWN_DIVERGENCES: &[(&str, &str, &str)] = &[(
    "packed-self-es512-p521",
    "rejected",
    "ES512 credentials (ECDSA on P-521) are refused as unusable: ring, the verifier, has no P-521",
)];

/// What Tether answers for a vector: `verified`, `unattested` or `rejected`, and why.
fn reached_verdict(v: &Vector) -> (&'static str, String) {
    match v.verify(&v.response) {
        Err(e) => ("rejected", e.to_string()),
        Ok(r) if r.trust.is_trusted() && r.is_attested(&[]).is_ok() => ("verified", format!("{:?}", r.trust)),
        Ok(r) if r.trust == AttestationTrust::SelfOrNone => {
            assert!(matches!(r.attestation_type.as_str(), "none" | "self"), "{}", v.name);
            assert!(r.is_attested(&[]).is_err(), "{}: self/none must not count as attested", v.name);
            ("unattested", r.attestation_type.as_str().to_owned())
        }
        Ok(r) => ("rejected", format!("{:?}", r.trust)),
    }
}

#[test]
fn every_stated_verdict_is_reached() {
    let mut counts = std::collections::BTreeMap::new();
    let mut mismatches = Vec::new();
    for v in load_all() {
        let Some(stated) = v.expected_verdict() else { continue };
        let (reached, why) = reached_verdict(&v);
        let expected =
            KNOWN_DIVERGENCES.iter().find(|(name, ..)| *name == v.name).map_or(stated, |(_, instead, _)| instead);
        if reached != expected {
            mismatches.push(format!("{}: stated {stated}, expected {expected}, reached {reached} ({why})", v.name));
        }
        *counts.entry(reached).or_insert(0) += 1;
    }
    assert!(mismatches.is_empty(), "verdicts not reached:\n{}", mismatches.join("\n"));
    eprintln!("verdicts reached: {counts:?}");
    if vectors_dir().is_some() {
        assert_eq!(counts.len(), 3, "every verdict kind is exercised: {counts:?}");
    }
}

#[test]
fn real_device_vectors_verify_as_trusted() {
    let vectors = load_all();
    for v in vectors.iter().filter(|v| expected_trusted(v)) {
        let verified = v.verify(&v.response).unwrap_or_else(|e| panic!("{}: registration rejected: {e}", v.name));
        let AttestationTrust::Trusted { anchor_subject } = &verified.trust else {
            panic!("{}: expected Trusted, got {:?}", v.name, verified.trust);
        };
        assert!(!anchor_subject.is_empty());
        let parsed = &v.raw["parsed"];
        assert_eq!(verified.format.as_str(), v.format(), "{}", v.name);
        assert_eq!(verified.aaguid.to_string(), str_field(parsed, "aaguid"), "{}", v.name);
        assert_eq!(u64::from(verified.sign_count), parsed["sign_count"].as_u64().unwrap_or(u64::MAX));
        assert_eq!(Some(verified.user_verified), parsed["flags"]["UV"].as_bool(), "{}", v.name);
        assert_eq!(verified.is_attested(&[]), Ok(()), "{}", v.name);
        assert_eq!(verified.is_attested(&[verified.aaguid]), Ok(()), "{}: its own AAGUID is allowed", v.name);
        eprintln!("{}: Trusted via {anchor_subject} at {}", v.name, v.at);
    }
}

#[test]
fn every_expected_vector_is_present() {
    let vectors = load_all();
    if vectors.is_empty() {
        return;
    }
    for name in [
        "packed-yubikey-bio-5.5.6",
        "packed-yubikey5nfc",
        "fido-u2f-yubikey-neo",
        "android-key-pixel8a-2025",
        "android-key-samsung-2025",
        "apple-ios",
        "none-localhost",
    ] {
        assert!(vectors.iter().any(|v| v.name == name), "vector {name} missing");
    }
}

#[test]
fn ed25519_yubikey_bio_has_an_eddsa_credential() {
    for v in load_all().iter().filter(|v| v.name == "packed-yubikey-bio-5.5.6") {
        let verified = v.verify(&v.response).expect("bio verifies");
        assert_eq!(verified.public_key.algorithm(), -8);
        assert!(verified.trust.is_trusted());
    }
}

#[test]
fn samsung_vector_verifies_now_via_roots_2_or_3_despite_expired_root_1() {
    for v in load_all().iter().filter(|v| v.name == "android-key-samsung-2025") {
        // Root 1 in x5c (and in the store) expired on 2026-05-24; the chain still reaches
        // roots 2/3, which share its subject and key.
        let at = parse_time("2026-11-26T00:00:00Z");
        let expect = RegistrationExpectation { rp_id: &v.rp_id, origin: &v.origin, challenge: &v.challenge };
        let verified = verify_registration(&v.response, &expect, &v.trust, at).expect("valid");
        assert!(verified.trust.is_trusted(), "{:?}", verified.trust);
        // With only root 1 configured, the same chain is not trusted at that instant.
        let mut only_root_1 = TrustStore::new();
        let dir = vectors_dir().expect("dir");
        let pem = std::fs::read_to_string(dir.join("roots/google-hardware-attestation-root-1.pem")).expect("root 1");
        only_root_1.add_pem(&pem).expect("pem");
        let verified = verify_registration(&v.response, &expect, &only_root_1, at).expect("valid");
        assert!(!verified.trust.is_trusted(), "{:?}", verified.trust);
    }
}

#[test]
fn none_attestation_is_self_or_none() {
    for v in load_all().iter().filter(|v| v.name == "none-localhost") {
        let verified = v.verify(&v.response).expect("none vector verifies");
        assert_eq!(verified.trust, AttestationTrust::SelfOrNone);
        assert_eq!(verified.attestation_type.as_str(), "none");
        assert!(verified.is_attested(&[]).is_err());
    }
}

#[test]
fn safetynet_is_untrusted_with_a_reason() {
    for v in load_all().iter().filter(|v| v.format() == "android-safetynet") {
        let verified = v.verify(&v.response).expect("ceremony is valid");
        match &verified.trust {
            AttestationTrust::Untrusted { reason } => assert!(reason.contains("safetynet")),
            other => panic!("{}: expected Untrusted, got {other:?}", v.name),
        }
    }
}

#[test]
fn tpm_conformance_tool_vector_is_not_trusted() {
    for v in load_all().iter().filter(|v| v.name == "tpm-rs256-fido-conformance") {
        // Its statement is valid, but it chains to "FIDO Fake TPM Root Certificate Authority
        // 2018", which is not (and must not be) a trust anchor.
        let verified = v.verify(&v.response).expect("statement itself is valid");
        assert!(!verified.trust.is_trusted(), "{:?}", verified.trust);
        let mut store = TrustStore::new();
        let dir = vectors_dir().expect("dir");
        let pem = std::fs::read_to_string(dir.join("roots/microsoft-tpm-root-ca-2014.pem")).expect("root");
        store.add_pem(&pem).expect("pem");
        let expect = RegistrationExpectation { rp_id: &v.rp_id, origin: &v.origin, challenge: &v.challenge };
        let verified = verify_registration(&v.response, &expect, &store, v.at).expect("valid");
        match verified.trust {
            AttestationTrust::Untrusted { reason } => assert!(reason.contains("FIDO Fake TPM Root"), "{reason}"),
            other => panic!("expected Untrusted, got {other:?}"),
        }
        assert_eq!(verified.attestation_type.as_str(), "attca");
    }
}

#[test]
fn windows_hello_tpm_vectors_are_trusted_as_attca() {
    let mut seen = 0;
    for v in load_all().iter().filter(|v| v.format() == "tpm" && expected_trusted(v)) {
        let verified = v.verify(&v.response).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert!(verified.trust.is_trusted(), "{}: {:?}", v.name, verified.trust);
        assert_eq!(verified.attestation_type.as_str(), "attca");
        seen += 1;
    }
    if vectors_dir().is_some() {
        // Two in the first set (Nuvoton), nine in the second (Intel PTT, Nuvoton, STMicro).
        assert!(seen >= 11, "only {seen} Windows Hello TPM vectors");
    }
}

#[test]
fn assertions_verify_against_the_registered_key() {
    let mut checked = 0;
    for v in load_all() {
        let Some(assertion) = v.raw.get("assertion_response") else { continue };
        let registered = v.verify(&v.response).expect("registration verifies");
        let response = AuthenticationResponseJson::from_json(&assertion.to_string()).expect("assertion parses");
        let challenge = b64url_decode(str_field(assertion, "expected_challenge_b64url")).expect("b64");
        let expect = AssertionExpectation {
            rp_id: &v.rp_id,
            origin: &v.origin,
            challenge: &challenge,
            require_user_verification: false,
        };
        let verified = verify_assertion(&response, &expect, &registered.credential_id, &registered.public_key)
            .unwrap_or_else(|e| panic!("{}: assertion rejected: {e}", v.name));
        assert!(verified.user_present);
        // A flipped signature byte must be rejected.
        let mut sig = b64url_decode(&response.response.signature).expect("sig");
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        let mut tampered = response.clone();
        tampered.response.signature = b64url_encode(&sig);
        assert!(
            verify_assertion(&tampered, &expect, &registered.credential_id, &registered.public_key).is_err(),
            "{}: tampered assertion accepted",
            v.name
        );
        checked += 1;
    }
    if vectors_dir().is_some() {
        assert!(checked >= 4, "expected at least four vectors with assertions");
    }
}

// ---- single-byte tampering ------------------------------------------------------------

fn rejected(v: &Vector, response: &RegistrationResponseJson) -> bool {
    match v.verify(response) {
        Err(_) => true,
        Ok(r) => !r.trust.is_trusted(),
    }
}

fn attestation_object(v: &Vector) -> ciborium::Value {
    let bytes = b64url_decode(&v.response.response.attestation_object).expect("b64");
    ciborium::de::from_reader(bytes.as_slice()).expect("cbor")
}

fn with_object(v: &Vector, object: &ciborium::Value) -> RegistrationResponseJson {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(object, &mut bytes).expect("encode");
    let mut response = v.response.clone();
    response.response.attestation_object = b64url_encode(&bytes);
    response
}

fn entry_mut<'a>(map: &'a mut ciborium::Value, key: &str) -> &'a mut ciborium::Value {
    let entries = map.as_map_mut().expect("map");
    &mut entries.iter_mut().find(|(k, _)| k.as_text() == Some(key)).unwrap_or_else(|| panic!("no {key}")).1
}

#[test]
fn flipped_authenticator_data_bytes_are_rejected() {
    for v in load_all().iter().filter(|v| expected_trusted(v)) {
        let object = attestation_object(v);
        let auth_data = object.as_map().and_then(|m| {
            m.iter().find(|(k, _)| k.as_text() == Some("authData")).and_then(|(_, v)| v.as_bytes().cloned())
        });
        let auth_data = auth_data.expect("authData");
        for i in 0..auth_data.len() {
            let mut tampered = object.clone();
            let mut bytes = auth_data.clone();
            bytes[i] ^= 0x01;
            *entry_mut(&mut tampered, "authData") = ciborium::Value::Bytes(bytes);
            assert!(rejected(v, &with_object(v, &tampered)), "{}: authData byte {i} flip accepted", v.name);
        }
    }
}

#[test]
fn flipped_client_data_bytes_are_rejected() {
    for v in load_all().iter().filter(|v| expected_trusted(v)) {
        let client_data = b64url_decode(&v.response.response.client_data_json).expect("b64");
        for i in 0..client_data.len() {
            let mut bytes = client_data.clone();
            bytes[i] ^= 0x01;
            let mut response = v.response.clone();
            response.response.client_data_json = b64url_encode(&bytes);
            assert!(rejected(v, &response), "{}: clientDataJSON byte {i} flip accepted", v.name);
        }
    }
}

#[test]
fn flipped_signature_and_certificate_bytes_are_rejected() {
    for v in load_all().iter().filter(|v| expected_trusted(v)) {
        let object = attestation_object(v);
        let mut stmt = object.clone();
        let att_stmt = entry_mut(&mut stmt, "attStmt").clone();
        let has_sig = att_stmt.as_map().is_some_and(|m| m.iter().any(|(k, _)| k.as_text() == Some("sig")));
        if has_sig {
            let sig = entry_mut(&mut att_stmt.clone(), "sig").as_bytes().cloned().expect("sig bytes");
            for i in [0, sig.len() / 2, sig.len() - 1] {
                let mut tampered = object.clone();
                let mut bytes = sig.clone();
                bytes[i] ^= 0x01;
                *entry_mut(entry_mut(&mut tampered, "attStmt"), "sig") = ciborium::Value::Bytes(bytes);
                assert!(rejected(v, &with_object(v, &tampered)), "{}: sig byte {i} flip accepted", v.name);
            }
        }
        for field in ["certInfo", "pubArea"] {
            let Some(data) = att_stmt
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(field)))
                .and_then(|(_, v)| v.as_bytes().cloned())
            else {
                continue;
            };
            for i in 0..data.len() {
                let mut tampered = object.clone();
                let mut bytes = data.clone();
                bytes[i] ^= 0x01;
                *entry_mut(entry_mut(&mut tampered, "attStmt"), field) = ciborium::Value::Bytes(bytes);
                assert!(rejected(v, &with_object(v, &tampered)), "{}: {field} byte {i} flip accepted", v.name);
            }
        }
        let x5c = entry_mut(&mut att_stmt.clone(), "x5c").as_array().cloned().expect("x5c");
        let anchors: Vec<String> = v.trust.anchors().map(|a| a.sha256_fingerprint.clone()).collect();
        for (index, cert) in x5c.iter().enumerate() {
            let der = cert.as_bytes().cloned().expect("der");
            let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
            if anchors.contains(&fingerprint) {
                // A copy of a trust anchor inside x5c is never relied on; the store's is.
                continue;
            }
            // Every byte of the envelope (headers, signature algorithm, signature) with two
            // masks, and a sample of the signed body; the softkey tests flip every byte.
            let envelope = |i: usize| i < 16 || i + 96 >= der.len();
            let positions =
                (0..der.len()).filter(|i| envelope(*i) || i % 13 == 0).flat_map(|i| [(i, 0x01u8), (i, 0x80)]);
            for (i, mask) in positions {
                let mut tampered = object.clone();
                let mut bytes = der.clone();
                bytes[i] ^= mask;
                let chain = entry_mut(entry_mut(&mut tampered, "attStmt"), "x5c");
                chain.as_array_mut().expect("array")[index] = ciborium::Value::Bytes(bytes);
                assert!(rejected(v, &with_object(v, &tampered)), "{}: x5c[{index}] byte {i} flip accepted", v.name);
            }
        }
    }
}
