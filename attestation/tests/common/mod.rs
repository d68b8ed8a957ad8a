//! Shared helpers for the integration tests: options JSON, soft authenticators, PKIs.

#![allow(dead_code)]

use tether_attestation::json::{AuthenticationResponseJson, RegistrationResponseJson};
use tether_attestation::registration::{
    RegistrationError, RegistrationExpectation, VerifiedRegistration, verify_registration,
};
use tether_attestation::trust::TrustStore;
use tether_attestation::{b64url_decode, b64url_encode};
use tether_softkey::pki::TestPki;
use tether_softkey::{AttestationMode, SoftAuthenticator};
use time::OffsetDateTime;

pub const RP_ID: &str = "tether.example";
pub const ORIGIN: &str = "https://tether.example";
pub const CHALLENGE: &[u8] = b"registration-challenge-0123456789";
pub const AAGUID: uuid::Uuid = uuid::uuid!("6d44ba9b-f6ec-2e49-b930-0c8fe920cb73");

pub fn creation_options(challenge: &[u8]) -> String {
    serde_json::json!({
        "rp": { "id": RP_ID, "name": "Tether" },
        "user": { "id": b64url_encode(b"user-1"), "name": "ada", "displayName": "Ada" },
        "challenge": b64url_encode(challenge),
        "pubKeyCredParams": [{ "type": "public-key", "alg": -7 }],
        "attestation": "direct",
    })
    .to_string()
}

pub fn request_options(challenge: &[u8], allow: &[Vec<u8>]) -> String {
    let allow: Vec<_> =
        allow.iter().map(|id| serde_json::json!({ "type": "public-key", "id": b64url_encode(id) })).collect();
    serde_json::json!({
        "challenge": b64url_encode(challenge),
        "rpId": RP_ID,
        "allowCredentials": allow,
        "userVerification": "required",
    })
    .to_string()
}

pub fn pki(org: &str) -> TestPki {
    TestPki::generate(org).expect("generate PKI")
}

pub fn packed_mode(pki: &TestPki) -> AttestationMode {
    AttestationMode::Packed {
        ca_cert_pem: pki.intermediate_cert_pem.clone(),
        ca_key_pem: pki.intermediate_key_pem.clone(),
    }
}

pub fn store(pem: &str) -> TrustStore {
    let mut store = TrustStore::new();
    store.add_pem(pem).expect("anchor PEM");
    store
}

/// Registers a new credential; returns the authenticator and the parsed response.
pub fn register(mode: AttestationMode) -> (SoftAuthenticator, RegistrationResponseJson) {
    let mut authenticator = SoftAuthenticator::new(mode, AAGUID).expect("authenticator");
    let json = authenticator.make_credential(&creation_options(CHALLENGE), ORIGIN).expect("make_credential");
    let response = RegistrationResponseJson::from_json(&json).expect("response JSON");
    (authenticator, response)
}

pub fn expectation() -> RegistrationExpectation<'static> {
    RegistrationExpectation { rp_id: RP_ID, origin: ORIGIN, challenge: CHALLENGE }
}

pub fn verify(
    response: &RegistrationResponseJson,
    trust: &TrustStore,
) -> Result<VerifiedRegistration, RegistrationError> {
    verify_registration(response, &expectation(), trust, OffsetDateTime::now_utc())
}

/// Decodes, edits and re-encodes a base64url field.
pub fn edit_b64(value: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = b64url_decode(value).expect("base64url");
    edit(&mut bytes);
    b64url_encode(&bytes)
}

pub fn attestation_object(response: &RegistrationResponseJson) -> ciborium::Value {
    let bytes = b64url_decode(&response.response.attestation_object).expect("b64");
    ciborium::de::from_reader(bytes.as_slice()).expect("cbor")
}

pub fn set_attestation_object(response: &mut RegistrationResponseJson, object: &ciborium::Value) {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(object, &mut bytes).expect("encode");
    response.response.attestation_object = b64url_encode(&bytes);
}

pub fn map_entry<'a>(map: &'a mut ciborium::Value, key: &str) -> &'a mut ciborium::Value {
    &mut map
        .as_map_mut()
        .expect("map")
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

/// Re-signs an assertion after editing its authenticator data, using the credential's
/// private key from the authenticator's exported state: a genuinely signed variant.
pub fn resign_assertion(
    authenticator: &SoftAuthenticator,
    response: &AuthenticationResponseJson,
    edit_auth_data: impl FnOnce(&mut Vec<u8>),
) -> AuthenticationResponseJson {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let state: serde_json::Value = serde_json::from_str(&authenticator.to_state_json()).expect("state JSON");
    let pkcs8 = b64url_decode(state["credential"]["private_key_pkcs8"].as_str().expect("key")).expect("b64");
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng).expect("key");
    let mut auth_data = b64url_decode(&response.response.authenticator_data).expect("b64");
    edit_auth_data(&mut auth_data);
    let client_data = b64url_decode(&response.response.client_data_json).expect("b64");
    let hash = ring::digest::digest(&ring::digest::SHA256, &client_data);
    let signed = [auth_data.as_slice(), hash.as_ref()].concat();
    let signature = key.sign(&rng, &signed).expect("sign");
    let mut out = response.clone();
    out.response.authenticator_data = b64url_encode(&auth_data);
    out.response.signature = b64url_encode(signature.as_ref());
    out
}
