//! Registration verification against responses from the soft authenticator.

mod common;

use common::*;
use tether_attestation::registration::{AttestationTrust, RegistrationError, StatementError};
use tether_attestation::trust::TrustStore;
use tether_softkey::AttestationMode;
use tether_softkey::pki::TestPki;
use time::{Duration, OffsetDateTime};

#[test]
fn packed_chain_to_configured_root_is_trusted_with_the_root_subject() {
    let pki = pki("Acme Devices");
    let (_, response) = register(packed_mode(&pki));
    let verified = verify(&response, &store(&pki.root_cert_pem)).expect("valid registration");
    match &verified.trust {
        AttestationTrust::Trusted { anchor_subject } => {
            assert!(anchor_subject.contains("CN=Acme Devices Attestation Root CA"), "{anchor_subject}");
        }
        other => panic!("expected Trusted, got {other:?}"),
    }
    assert_eq!(verified.format.as_str(), "packed");
    assert_eq!(verified.attestation_type.as_str(), "basic");
    assert_eq!(verified.aaguid, AAGUID);
    assert_eq!(verified.sign_count, 0);
    assert!(verified.user_present && verified.user_verified);
    assert_eq!(verified.public_key.algorithm(), -7);
    assert_eq!(verified.is_attested(&[]), Ok(()));
    assert_eq!(verified.is_attested(&[AAGUID]), Ok(()));
}

#[test]
fn packed_chain_to_an_unknown_root_is_untrusted_not_an_error() {
    let pki = pki("Acme Devices");
    let other = TestPki::generate("Other Vendor").expect("pki");
    let (_, response) = register(packed_mode(&pki));
    let verified = verify(&response, &store(&other.root_cert_pem)).expect("statement is valid");
    match &verified.trust {
        AttestationTrust::Untrusted { reason } => assert!(reason.contains("x5c[1]"), "{reason}"),
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert!(verified.is_attested(&[]).is_err());
}

#[test]
fn same_named_but_different_root_is_untrusted() {
    // Same subject names, different keys: only the signature can tell them apart.
    let pki = pki("Acme Devices");
    let impostor = TestPki::generate("Acme Devices").expect("pki");
    let (_, response) = register(packed_mode(&pki));
    let verified = verify(&response, &store(&impostor.root_cert_pem)).expect("statement is valid");
    match &verified.trust {
        AttestationTrust::Untrusted { reason } => assert!(reason.contains("signature"), "{reason}"),
        other => panic!("expected Untrusted, got {other:?}"),
    }
}

#[test]
fn empty_trust_store_is_untrusted() {
    let pki = pki("Acme Devices");
    let (_, response) = register(packed_mode(&pki));
    let verified = verify(&response, &TrustStore::new()).expect("statement is valid");
    assert!(!verified.trust.is_trusted());
}

#[test]
fn aaguid_outside_the_allow_list_is_not_attested() {
    let pki = pki("Acme Devices");
    let (_, response) = register(packed_mode(&pki));
    let verified = verify(&response, &store(&pki.root_cert_pem)).expect("valid");
    let other = uuid::uuid!("00000000-0000-0000-0000-000000000001");
    let err = verified.is_attested(&[other]).expect_err("AAGUID not allowed");
    assert!(err.contains(&AAGUID.to_string()), "{err}");
}

#[test]
fn self_attestation_is_self_or_none() {
    let (_, response) = register(AttestationMode::SelfAttestation);
    let verified = verify(&response, &TrustStore::new()).expect("valid");
    assert_eq!(verified.trust, AttestationTrust::SelfOrNone);
    assert_eq!(verified.attestation_type.as_str(), "self");
    assert!(verified.is_attested(&[]).is_err());
}

#[test]
fn none_attestation_is_self_or_none() {
    let (_, response) = register(AttestationMode::None);
    let verified = verify(&response, &TrustStore::new()).expect("valid");
    assert_eq!(verified.trust, AttestationTrust::SelfOrNone);
    assert_eq!(verified.format.as_str(), "none");
    assert_eq!(verified.attestation_type.as_str(), "none");
}

fn tamper_sig(response: &mut tether_attestation::json::RegistrationResponseJson) {
    let mut object = attestation_object(response);
    let stmt = map_entry(&mut object, "attStmt");
    let sig = map_entry(stmt, "sig");
    let mut bytes = sig.as_bytes().cloned().expect("sig");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    *sig = ciborium::Value::Bytes(bytes);
    set_attestation_object(response, &object);
}

#[test]
fn tampered_packed_signature_is_an_error() {
    let pki = pki("Acme Devices");
    let (_, mut response) = register(packed_mode(&pki));
    tamper_sig(&mut response);
    let err = verify(&response, &store(&pki.root_cert_pem)).expect_err("tampered");
    assert!(
        matches!(err, RegistrationError::InvalidStatement { source: StatementError::BadSignature(_), .. }),
        "{err}"
    );
}

#[test]
fn tampered_self_attestation_signature_is_an_error() {
    let (_, mut response) = register(AttestationMode::SelfAttestation);
    tamper_sig(&mut response);
    assert!(verify(&response, &TrustStore::new()).is_err());
}

#[test]
fn wrong_challenge_is_an_error() {
    let (_, response) = register(AttestationMode::None);
    let expect =
        tether_attestation::registration::RegistrationExpectation { challenge: b"another challenge", ..expectation() };
    let err = tether_attestation::registration::verify_registration(
        &response,
        &expect,
        &TrustStore::new(),
        OffsetDateTime::now_utc(),
    )
    .expect_err("wrong challenge");
    assert_eq!(err, RegistrationError::ChallengeMismatch);
}

#[test]
fn wrong_origin_is_an_error() {
    let (_, response) = register(AttestationMode::None);
    let expect =
        tether_attestation::registration::RegistrationExpectation { origin: "https://evil.example", ..expectation() };
    let err = tether_attestation::registration::verify_registration(
        &response,
        &expect,
        &TrustStore::new(),
        OffsetDateTime::now_utc(),
    )
    .expect_err("wrong origin");
    assert!(matches!(err, RegistrationError::OriginMismatch { .. }), "{err}");
    assert!(err.to_string().contains("evil.example"));
}

#[test]
fn wrong_rp_id_is_an_error() {
    let (_, response) = register(AttestationMode::SelfAttestation);
    let expect = tether_attestation::registration::RegistrationExpectation { rp_id: "other.example", ..expectation() };
    let err = tether_attestation::registration::verify_registration(
        &response,
        &expect,
        &TrustStore::new(),
        OffsetDateTime::now_utc(),
    )
    .expect_err("wrong rp id");
    assert!(matches!(err, RegistrationError::RpIdMismatch(_)), "{err}");
}

#[test]
fn expired_attestation_chain_is_untrusted_now_and_trusted_inside_its_validity() {
    let not_before = OffsetDateTime::now_utc() - Duration::days(400);
    let not_after = OffsetDateTime::now_utc() - Duration::days(30);
    let pki = TestPki::generate_with_validity("Old Devices", not_before, not_after).expect("pki");
    let (_, response) = register(packed_mode(&pki));
    let trust = store(&pki.root_cert_pem);

    let now = verify(&response, &trust).expect("statement is valid");
    match &now.trust {
        AttestationTrust::Untrusted { reason } => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expected Untrusted now, got {other:?}"),
    }
    let then = not_before + Duration::days(100);
    let verified =
        tether_attestation::registration::verify_registration(&response, &expectation(), &trust, then).expect("valid");
    assert!(verified.trust.is_trusted(), "{:?}", verified.trust);
    let before = not_before - Duration::days(1);
    let early = tether_attestation::registration::verify_registration(&response, &expectation(), &trust, before)
        .expect("valid");
    match &early.trust {
        AttestationTrust::Untrusted { reason } => assert!(reason.contains("not valid before"), "{reason}"),
        other => panic!("expected Untrusted before validity, got {other:?}"),
    }
}

#[test]
fn id_and_raw_id_must_agree_with_authenticator_data() {
    let (_, response) = register(AttestationMode::None);
    let mut mismatched = response.clone();
    mismatched.id = edit_b64(&response.id, |b| b[0] ^= 1);
    assert_eq!(verify(&mismatched, &TrustStore::new()), Err(RegistrationError::IdMismatch));
    let mut both = response.clone();
    both.id = edit_b64(&response.id, |b| b[0] ^= 1);
    both.raw_id = both.id.clone();
    assert_eq!(verify(&both, &TrustStore::new()), Err(RegistrationError::CredentialIdMismatch));
}

fn with_client_data(
    response: &tether_attestation::json::RegistrationResponseJson,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tether_attestation::json::RegistrationResponseJson {
    let bytes = tether_attestation::b64url_decode(&response.response.client_data_json).expect("b64");
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    edit(&mut json);
    let mut out = response.clone();
    out.response.client_data_json = tether_attestation::b64url_encode(json.to_string().as_bytes());
    out
}

#[test]
fn wrong_ceremony_type_and_cross_origin_are_errors() {
    let (_, response) = register(AttestationMode::None);
    let get = with_client_data(&response, |j| j["type"] = "webauthn.get".into());
    assert!(matches!(verify(&get, &TrustStore::new()), Err(RegistrationError::WrongCeremonyType(_))));
    let cross = with_client_data(&response, |j| j["crossOrigin"] = true.into());
    assert_eq!(verify(&cross, &TrustStore::new()), Err(RegistrationError::CrossOrigin));
}

#[test]
fn missing_user_presence_is_an_error() {
    let (_, response) = register(AttestationMode::None);
    let mut object = attestation_object(&response);
    let auth_data = map_entry(&mut object, "authData");
    let mut bytes = auth_data.as_bytes().cloned().expect("bytes");
    bytes[32] &= !0x01;
    *auth_data = ciborium::Value::Bytes(bytes);
    let mut response = response.clone();
    set_attestation_object(&mut response, &object);
    assert_eq!(verify(&response, &TrustStore::new()), Err(RegistrationError::UserNotPresent));
}

#[test]
fn wrong_credential_type_is_an_error() {
    let (_, mut response) = register(AttestationMode::None);
    response.type_ = "password".to_owned();
    assert!(matches!(verify(&response, &TrustStore::new()), Err(RegistrationError::WrongCredentialType(_))));
}

#[test]
fn unknown_format_is_an_error() {
    let (_, mut response) = register(AttestationMode::None);
    let mut object = attestation_object(&response);
    *map_entry(&mut object, "fmt") = ciborium::Value::from("compound");
    set_attestation_object(&mut response, &object);
    assert_eq!(verify(&response, &TrustStore::new()), Err(RegistrationError::UnsupportedFormat("compound".to_owned())));
}

#[test]
fn none_format_with_a_statement_is_an_error() {
    let (_, mut response) = register(AttestationMode::SelfAttestation);
    let mut object = attestation_object(&response);
    *map_entry(&mut object, "fmt") = ciborium::Value::from("none");
    set_attestation_object(&mut response, &object);
    assert!(verify(&response, &TrustStore::new()).is_err());
}

#[test]
fn self_attestation_relabelled_as_packed_chain_cannot_borrow_a_trusted_chain() {
    // Graft a genuine x5c from another registration onto a self-attested statement: the
    // signature was made by the credential key, not the certificate's, so it must fail.
    let pki = pki("Acme Devices");
    let (_, genuine) = register(packed_mode(&pki));
    let (_, mut forged) = register(AttestationMode::SelfAttestation);
    let mut genuine_object = attestation_object(&genuine);
    let x5c = map_entry(map_entry(&mut genuine_object, "attStmt"), "x5c").clone();
    let mut object = attestation_object(&forged);
    let stmt = map_entry(&mut object, "attStmt");
    stmt.as_map_mut().expect("map").push((ciborium::Value::from("x5c"), x5c));
    set_attestation_object(&mut forged, &object);
    assert!(verify(&forged, &store(&pki.root_cert_pem)).is_err());
}
