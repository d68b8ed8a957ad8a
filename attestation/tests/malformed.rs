//! Hostile and broken input must produce errors, never panics or hangs.

mod common;

use common::*;
use tether_attestation::assertion::{AssertionExpectation, verify_assertion};
use tether_attestation::client_data::parse_client_data;
use tether_attestation::cose::CredentialPublicKey;
use tether_attestation::json::{AuthenticationResponseJson, RegistrationResponseJson};
use tether_attestation::trust::TrustStore;
use tether_attestation::{b64url_decode, b64url_encode};
use tether_softkey::AttestationMode;

/// A deterministic xorshift generator: reproducible "random" input without extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn with_object_bytes(response: &RegistrationResponseJson, bytes: &[u8]) -> RegistrationResponseJson {
    let mut out = response.clone();
    out.response.attestation_object = b64url_encode(bytes);
    out
}

#[test]
fn random_attestation_objects_are_rejected() {
    let (_, response) = register(AttestationMode::None);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for len in 0..400 {
        let bytes = rng.bytes(len % 97 + len / 3);
        assert!(verify(&with_object_bytes(&response, &bytes), &TrustStore::new()).is_err());
    }
}

#[test]
fn every_truncation_of_a_packed_attestation_object_is_rejected() {
    let pki = pki("Acme Devices");
    let (_, response) = register(packed_mode(&pki));
    let trust = store(&pki.root_cert_pem);
    let full = b64url_decode(&response.response.attestation_object).expect("b64");
    assert!(verify(&with_object_bytes(&response, &full), &trust).is_ok_and(|r| r.trust.is_trusted()));
    for len in 0..full.len() {
        let truncated = with_object_bytes(&response, &full[..len]);
        assert!(verify(&truncated, &trust).is_err(), "truncation to {len} bytes accepted");
    }
    // Trailing garbage is not tolerated either.
    let mut extended = full.clone();
    extended.push(0);
    assert!(verify(&with_object_bytes(&response, &extended), &trust).is_err());
}

#[test]
fn every_single_byte_change_of_a_packed_attestation_object_is_not_trusted() {
    let pki = pki("Acme Devices");
    let (_, response) = register(packed_mode(&pki));
    let trust = store(&pki.root_cert_pem);
    let full = b64url_decode(&response.response.attestation_object).expect("b64");
    for i in 0..full.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[i] ^= mask;
            let outcome = verify(&with_object_bytes(&response, &bytes), &trust);
            // x5c is [leaf, intermediate] and the root is only in the store, so every byte
            // is covered by a signature, a certificate, or the structure itself.
            assert!(!outcome.is_ok_and(|r| r.trust.is_trusted()), "byte {i} ^ {mask:#x} still trusted");
        }
    }
}

#[test]
fn truncated_authenticator_data_is_rejected() {
    let (_, response) = register(AttestationMode::SelfAttestation);
    let mut object = attestation_object(&response);
    let auth_data = map_entry(&mut object, "authData").as_bytes().cloned().expect("bytes");
    for len in 0..auth_data.len() {
        let mut edited = object.clone();
        *map_entry(&mut edited, "authData") = ciborium::Value::Bytes(auth_data[..len].to_vec());
        let mut response = response.clone();
        set_attestation_object(&mut response, &edited);
        assert!(verify(&response, &TrustStore::new()).is_err(), "authData truncated to {len} accepted");
    }
}

#[test]
fn bad_base64_in_any_field_is_rejected() {
    let (_, response) = register(AttestationMode::None);
    let json = response.to_json();
    for field in
        [&response.id, &response.raw_id, &response.response.client_data_json, &response.response.attestation_object]
    {
        let broken = json.replacen(field.as_str(), "not*base64!", 1);
        assert!(RegistrationResponseJson::from_json(&broken).is_err());
    }
    let mut broken = response.clone();
    broken.response.client_data_json = "%%%".to_owned();
    assert!(verify(&broken, &TrustStore::new()).is_err());
    // Padded base64url is accepted.
    let mut padded = response.clone();
    let raw = b64url_decode(&padded.raw_id).expect("b64");
    padded.raw_id = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, raw);
    assert!(padded.raw_id.ends_with('=') || padded.raw_id.len() % 4 == 0);
    assert!(verify(&padded, &TrustStore::new()).is_ok());
}

#[test]
fn garbage_json_is_rejected() {
    let mut rng = Rng(7);
    for input in ["", "{}", "[]", "null", "{\"id\":1}", "\u{0}\u{1}", "{\"response\":{}}"] {
        assert!(RegistrationResponseJson::from_json(input).is_err(), "{input:?}");
        assert!(AuthenticationResponseJson::from_json(input).is_err(), "{input:?}");
    }
    for _ in 0..200 {
        let bytes = rng.bytes(64);
        let text = String::from_utf8_lossy(&bytes);
        assert!(RegistrationResponseJson::from_json(&text).is_err());
        assert!(parse_client_data(&bytes).is_err());
    }
}

#[test]
fn random_and_hostile_cose_keys_are_rejected() {
    let mut rng = Rng(42);
    for len in 0..300 {
        let _ = CredentialPublicKey::from_cose(&rng.bytes(len));
    }
    let hostile: &[&[u8]] = &[
        // A byte string claiming 2^64-1 bytes.
        &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A map claiming 2^32 entries.
        &[0xba, 0xff, 0xff, 0xff, 0xff],
        // Indefinite-length array never closed.
        &[0x9f, 0x01, 0x02],
        // Tag loop.
        &[0xc6, 0xc6, 0xc6, 0xc6, 0xc6],
    ];
    for input in hostile {
        assert!(CredentialPublicKey::from_cose(input).is_err());
    }
    // 100 000 nested arrays must hit the nesting limit, not the stack.
    let deep = vec![0x81u8; 100_000];
    assert!(CredentialPublicKey::from_cose(&deep).is_err());
    let (_, response) = register(AttestationMode::None);
    assert!(verify(&with_object_bytes(&response, &deep[..60_000]), &TrustStore::new()).is_err());
}

#[test]
fn truncated_and_random_certificates_are_rejected_by_the_trust_store() {
    let pki = pki("Acme Devices");
    let pem = &pki.root_cert_pem;
    let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem").1.contents;
    let mut store = TrustStore::new();
    for len in 0..der.len() {
        assert!(store.add_der(&der[..len]).is_err());
    }
    assert!(store.is_empty());
    assert!(store.add_pem("no certificates here").is_err());
    assert!(store.add_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    assert_eq!(store.add_pem(&format!("{pem}{pem}")), Ok(2));
    assert_eq!(store.anchors().count(), 1, "duplicates are stored once");
}

#[test]
fn malformed_assertions_are_rejected() {
    let (mut authenticator, response) = register(AttestationMode::SelfAttestation);
    let verified = verify(&response, &TrustStore::new()).expect("registration");
    let json = authenticator
        .get_assertion(&request_options(b"c", std::slice::from_ref(&verified.credential_id)), ORIGIN)
        .expect("assertion");
    let assertion = AuthenticationResponseJson::from_json(&json).expect("json");
    let expect =
        AssertionExpectation { rp_id: RP_ID, origin: ORIGIN, challenge: b"c", require_user_verification: false };
    let auth_data = b64url_decode(&assertion.response.authenticator_data).expect("b64");
    for len in 0..auth_data.len() {
        let mut edited = assertion.clone();
        edited.response.authenticator_data = b64url_encode(&auth_data[..len]);
        assert!(verify_assertion(&edited, &expect, &verified.credential_id, &verified.public_key).is_err());
    }
    let mut rng = Rng(99);
    for len in 0..100 {
        let mut edited = assertion.clone();
        edited.response.signature = b64url_encode(&rng.bytes(len));
        assert!(verify_assertion(&edited, &expect, &verified.credential_id, &verified.public_key).is_err());
        edited.response.client_data_json = b64url_encode(&rng.bytes(len));
        assert!(verify_assertion(&edited, &expect, &verified.credential_id, &verified.public_key).is_err());
    }
}
