//! Assertion verification against the soft authenticator.

mod common;

use common::*;
use tether_attestation::assertion::{AssertionError, AssertionExpectation, verify_assertion};
use tether_attestation::cose::CredentialPublicKey;
use tether_attestation::json::AuthenticationResponseJson;
use tether_attestation::trust::TrustStore;
use tether_softkey::{AttestationMode, SoftAuthenticator};

const LOGIN_CHALLENGE: &[u8] = b"login-challenge-abcdefghijklmnop";

struct Registered {
    authenticator: SoftAuthenticator,
    credential_id: Vec<u8>,
    key: CredentialPublicKey,
}

fn registered() -> Registered {
    let (authenticator, response) = register(AttestationMode::SelfAttestation);
    let verified = verify(&response, &TrustStore::new()).expect("registration");
    Registered { authenticator, credential_id: verified.credential_id, key: verified.public_key }
}

fn expectation(require_uv: bool) -> AssertionExpectation<'static> {
    AssertionExpectation {
        rp_id: RP_ID,
        origin: ORIGIN,
        challenge: LOGIN_CHALLENGE,
        require_user_verification: require_uv,
    }
}

fn assert_with(r: &mut Registered) -> AuthenticationResponseJson {
    let json = r
        .authenticator
        .get_assertion(&request_options(LOGIN_CHALLENGE, std::slice::from_ref(&r.credential_id)), ORIGIN)
        .expect("get_assertion");
    AuthenticationResponseJson::from_json(&json).expect("assertion JSON")
}

#[test]
fn valid_assertion_verifies_and_counts_up() {
    let mut r = registered();
    for expected_count in 1..=3 {
        let response = assert_with(&mut r);
        let verified =
            verify_assertion(&response, &expectation(true), &r.credential_id, &r.key).expect("valid assertion");
        assert_eq!(verified.sign_count, expected_count);
        assert!(verified.user_present && verified.user_verified);
    }
}

#[test]
fn tampered_signature_is_rejected() {
    let mut r = registered();
    let mut response = assert_with(&mut r);
    response.response.signature = edit_b64(&response.response.signature, |s| {
        let last = s.len() - 1;
        s[last] ^= 0x01;
    });
    let err = verify_assertion(&response, &expectation(false), &r.credential_id, &r.key).expect_err("tampered");
    assert!(matches!(err, AssertionError::BadSignature(_)), "{err}");
}

#[test]
fn tampered_authenticator_data_is_rejected() {
    let mut r = registered();
    let mut response = assert_with(&mut r);
    // Raise the counter without re-signing.
    response.response.authenticator_data = edit_b64(&response.response.authenticator_data, |a| a[36] ^= 0x40);
    let err = verify_assertion(&response, &expectation(false), &r.credential_id, &r.key).expect_err("tampered");
    assert!(matches!(err, AssertionError::BadSignature(_)), "{err}");
}

#[test]
fn wrong_challenge_is_rejected() {
    let mut r = registered();
    let response = assert_with(&mut r);
    let expect = AssertionExpectation { challenge: b"some other challenge", ..expectation(false) };
    assert_eq!(verify_assertion(&response, &expect, &r.credential_id, &r.key), Err(AssertionError::ChallengeMismatch));
}

#[test]
fn wrong_origin_and_rp_id_are_rejected() {
    let mut r = registered();
    let response = assert_with(&mut r);
    let expect = AssertionExpectation { origin: "https://evil.example", ..expectation(false) };
    assert!(matches!(
        verify_assertion(&response, &expect, &r.credential_id, &r.key),
        Err(AssertionError::OriginMismatch { .. })
    ));
    let expect = AssertionExpectation { rp_id: "evil.example", ..expectation(false) };
    assert!(matches!(
        verify_assertion(&response, &expect, &r.credential_id, &r.key),
        Err(AssertionError::RpIdMismatch(_))
    ));
}

#[test]
fn missing_user_verification_is_rejected_only_when_required() {
    let mut r = registered();
    let response = assert_with(&mut r);
    // A genuinely signed assertion without UV.
    let without_uv = resign_assertion(&r.authenticator, &response, |a| a[32] &= !0x04);
    let verified =
        verify_assertion(&without_uv, &expectation(false), &r.credential_id, &r.key).expect("UV not required");
    assert!(!verified.user_verified);
    assert_eq!(
        verify_assertion(&without_uv, &expectation(true), &r.credential_id, &r.key),
        Err(AssertionError::UserNotVerified)
    );
    let without_up = resign_assertion(&r.authenticator, &response, |a| a[32] &= !0x01);
    assert_eq!(
        verify_assertion(&without_up, &expectation(false), &r.credential_id, &r.key),
        Err(AssertionError::UserNotPresent)
    );
}

#[test]
fn assertion_for_another_credential_is_rejected() {
    let mut r = registered();
    let other = registered();
    let response = assert_with(&mut r);
    assert_eq!(
        verify_assertion(&response, &expectation(false), &other.credential_id, &r.key),
        Err(AssertionError::WrongCredential)
    );
    // Right id, wrong key: the signature cannot verify.
    assert!(matches!(
        verify_assertion(&response, &expectation(false), &r.credential_id, &other.key),
        Err(AssertionError::BadSignature(_))
    ));
}

#[test]
fn registration_client_data_cannot_be_replayed_as_an_assertion() {
    let mut r = registered();
    let response = assert_with(&mut r);
    let bytes = tether_attestation::b64url_decode(&response.response.client_data_json).expect("b64");
    let text = String::from_utf8(bytes).expect("utf8").replace("webauthn.get", "webauthn.create");
    let replayed = resign_with_client_data(&r, &response, &text);
    assert!(matches!(
        verify_assertion(&replayed, &expectation(false), &r.credential_id, &r.key),
        Err(AssertionError::WrongCeremonyType(_))
    ));
}

fn resign_with_client_data(
    r: &Registered,
    response: &AuthenticationResponseJson,
    client_data: &str,
) -> AuthenticationResponseJson {
    let mut edited = response.clone();
    edited.response.client_data_json = tether_attestation::b64url_encode(client_data.as_bytes());
    resign_assertion(&r.authenticator, &edited, |_| {})
}

#[test]
fn softkey_refuses_requests_it_cannot_serve() {
    let mut r = registered();
    let other_id = vec![9u8; 32];
    assert!(r.authenticator.get_assertion(&request_options(LOGIN_CHALLENGE, &[other_id]), ORIGIN).is_err());
    let before = r.authenticator.sign_count();
    assert_eq!(before, 0);
    // An empty allow list means "any credential for this RP".
    let json = r.authenticator.get_assertion(&request_options(LOGIN_CHALLENGE, &[]), ORIGIN).expect("ok");
    let response = AuthenticationResponseJson::from_json(&json).expect("json");
    assert!(verify_assertion(&response, &expectation(true), &r.credential_id, &r.key).is_ok());
    assert_eq!(r.authenticator.sign_count(), 1);
}

#[test]
fn state_round_trip_keeps_the_credential_and_counter() {
    let mut r = registered();
    let _ = assert_with(&mut r);
    let restored = SoftAuthenticator::from_state_json(&r.authenticator.to_state_json()).expect("restore");
    assert_eq!(restored.credential_id(), Some(r.credential_id.clone()));
    assert_eq!(restored.sign_count(), 1);
    let mut r2 = Registered { authenticator: restored, credential_id: r.credential_id.clone(), key: r.key.clone() };
    let response = assert_with(&mut r2);
    let verified = verify_assertion(&response, &expectation(true), &r.credential_id, &r.key).expect("valid");
    assert_eq!(verified.sign_count, 2);
    // A cloned authenticator with a rewound counter still signs validly; the service, not
    // this crate, compares counters.
    r2.authenticator.set_sign_count(0);
    let response = assert_with(&mut r2);
    let verified = verify_assertion(&response, &expectation(true), &r.credential_id, &r.key).expect("valid");
    assert_eq!(verified.sign_count, 1);
}

#[test]
fn the_signature_alone_tells_the_key_holders_answers_from_anyone_elses() {
    use tether_attestation::assertion::verify_signature;
    let mut r = registered();
    let response = assert_with(&mut r);
    verify_signature(&response, &r.key).expect("the key's own signature");
    // Wrong in every other respect, still the key holder's: verify_assertion judges the rest.
    let mut other = registered();
    let foreign = assert_with(&mut other);
    assert!(verify_signature(&foreign, &other.key).is_ok());
    let err = verify_signature(&foreign, &r.key).expect_err("another key's signature");
    assert!(matches!(err, AssertionError::BadSignature(_)), "{err}");
    let mut tampered = response.clone();
    tampered.response.client_data_json = edit_b64(&tampered.response.client_data_json, |c| c[0] ^= 0x01);
    assert!(matches!(verify_signature(&tampered, &r.key), Err(AssertionError::BadSignature(_))));
    let mut garbage = response;
    garbage.response.signature = "!".into();
    assert!(matches!(verify_signature(&garbage, &r.key), Err(AssertionError::Base64(_))));
}
