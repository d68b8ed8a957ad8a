//! The soft authenticator's own behaviour: what it refuses and what it persists.

use tether_attestation::b64url_encode;
use tether_attestation::json::RegistrationResponseJson;
use tether_attestation::registration::{RegistrationExpectation, verify_registration};
use tether_attestation::trust::TrustStore;
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator, SoftKeyError};

const AAGUID: uuid::Uuid = uuid::uuid!("11111111-2222-3333-4444-555555555555");

fn options(rp_id: &str, algs: &[i64]) -> String {
    let params: Vec<_> = algs.iter().map(|alg| serde_json::json!({ "type": "public-key", "alg": alg })).collect();
    serde_json::json!({
        "rp": { "id": rp_id, "name": "RP" },
        "user": { "id": b64url_encode(b"u"), "name": "u", "displayName": "U" },
        "challenge": b64url_encode(b"challenge"),
        "pubKeyCredParams": params,
    })
    .to_string()
}

fn request(rp_id: &str) -> String {
    serde_json::json!({ "challenge": b64url_encode(b"c"), "rpId": rp_id }).to_string()
}

#[test]
fn refuses_what_a_browser_or_authenticator_would() {
    let mut auth = SoftAuthenticator::new(AttestationMode::SelfAttestation, AAGUID).expect("new");
    assert!(matches!(auth.get_assertion(&request("a.example"), "https://a.example"), Err(SoftKeyError::NoCredential)));
    assert!(matches!(
        auth.make_credential(&options("a.example", &[-257, -8]), "https://a.example"),
        Err(SoftKeyError::UnsupportedAlgorithms)
    ));
    assert!(matches!(
        auth.make_credential(&options("a.example", &[-7]), "https://evil.example"),
        Err(SoftKeyError::OriginNotForRpId { .. })
    ));
    assert!(matches!(
        auth.make_credential(&options("a.example", &[-7]), "https://nota.example"),
        Err(SoftKeyError::OriginNotForRpId { .. })
    ));
    assert!(matches!(auth.make_credential("{", "https://a.example"), Err(SoftKeyError::Options(_))));
    auth.make_credential(&options("a.example", &[-8, -7]), "https://login.a.example:8443").expect("subdomain origin");
    assert!(matches!(
        auth.make_credential(&options("a.example", &[-7]), "https://a.example"),
        Err(SoftKeyError::AlreadyRegistered)
    ));
    assert!(matches!(
        auth.get_assertion(&request("b.example"), "https://b.example"),
        Err(SoftKeyError::RpIdMismatch { .. })
    ));
    auth.set_sign_count(u32::MAX);
    assert!(matches!(
        auth.get_assertion(&request("a.example"), "https://a.example"),
        Err(SoftKeyError::CounterExhausted)
    ));
}

#[test]
fn packed_mode_rejects_unusable_ca_material_up_front() {
    let pki = TestPki::generate("Vendor").expect("pki");
    let bad_key = AttestationMode::Packed { ca_cert_pem: pki.intermediate_cert_pem.clone(), ca_key_pem: "nope".into() };
    assert!(SoftAuthenticator::new(bad_key, AAGUID).is_err());
    let bad_cert = AttestationMode::Packed { ca_cert_pem: "nope".into(), ca_key_pem: pki.intermediate_key_pem.clone() };
    assert!(SoftAuthenticator::new(bad_cert, AAGUID).is_err());
    let mode = AttestationMode::Packed { ca_cert_pem: pki.intermediate_cert_pem, ca_key_pem: pki.intermediate_key_pem };
    assert!(!format!("{mode:?}").contains("PRIVATE"), "Debug must not print the CA key");
}

#[test]
fn packed_registration_carries_leaf_and_ca_and_verifies() {
    let pki = TestPki::generate("Vendor").expect("pki");
    let mode = AttestationMode::Packed {
        ca_cert_pem: pki.intermediate_cert_pem.clone(),
        ca_key_pem: pki.intermediate_key_pem.clone(),
    };
    let mut auth = SoftAuthenticator::new(mode, AAGUID).expect("new");
    let json = auth.make_credential(&options("a.example", &[-7]), "https://a.example").expect("register");
    let response = RegistrationResponseJson::from_json(&json).expect("json");
    let mut trust = TrustStore::new();
    trust.add_pem(&pki.root_cert_pem).expect("root");
    let expect = RegistrationExpectation { rp_id: "a.example", origin: "https://a.example", challenge: b"challenge" };
    let verified = verify_registration(&response, &expect, &trust, time::OffsetDateTime::now_utc()).expect("valid");
    assert!(verified.trust.is_trusted(), "{:?}", verified.trust);
    assert_eq!(verified.aaguid, AAGUID);
    assert_eq!(Some(verified.credential_id), auth.credential_id());
}

#[test]
fn state_json_round_trips_and_rejects_garbage() {
    let mut auth = SoftAuthenticator::new(AttestationMode::None, AAGUID).expect("new");
    let empty = SoftAuthenticator::from_state_json(&auth.to_state_json()).expect("restore empty");
    assert_eq!(empty.credential_id(), None);
    auth.make_credential(&options("a.example", &[-7]), "https://a.example").expect("register");
    auth.get_assertion(&request("a.example"), "https://a.example").expect("assert");
    let mut restored = SoftAuthenticator::from_state_json(&auth.to_state_json()).expect("restore");
    assert_eq!(restored.credential_id(), auth.credential_id());
    assert_eq!(restored.sign_count(), 1);
    restored.get_assertion(&request("a.example"), "https://a.example").expect("assert");
    assert_eq!(restored.sign_count(), 2);
    for garbage in ["", "{}", "{\"version\":2}", &auth.to_state_json().replace("\"none\"", "\"weird\"")] {
        assert!(SoftAuthenticator::from_state_json(garbage).is_err(), "{garbage}");
    }
}
