//! WebAuthn targets: attestation objects through registration verification, the
//! RegistrationResponseJSON and AuthenticationResponseJSON documents, clientDataJSON,
//! authenticator data, COSE keys and assertions.

use ciborium::Value;
use tether_attestation::assertion::{AssertionExpectation, verify_assertion};
use tether_attestation::authdata::AuthenticatorData;
use tether_attestation::client_data::parse_client_data;
use tether_attestation::cose::CredentialPublicKey;
use tether_attestation::json::{
    AssertionResponseJson, AttestationResponseJson, AuthenticationResponseJson, RegistrationResponseJson,
};
use tether_attestation::registration::{
    AttestationFormat, AttestationTrust, AttestationType, RegistrationError, RegistrationExpectation,
    VerifiedRegistration, verify_registration,
};
use tether_attestation::{b64url_decode, b64url_encode};

use crate::fixtures::{self, AT, CHALLENGE, ORIGIN, RP_ID};
use crate::frame::split;

/// Attestation objects are refused above this size by the verifier too.
const MAX_OBJECT: usize = 64 * 1024;

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

fn decode_cbor(bytes: &[u8]) -> Option<Value> {
    if bytes.len() > MAX_OBJECT {
        return None;
    }
    ciborium::de::from_reader_with_recursion_limit(bytes, 16).ok()
}

fn encode_cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for a decoded value; an empty result is just refused.
    let _ = ciborium::ser::into_writer(value, &mut out);
    out
}

fn entry<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

/// One registration ceremony built around an attestation object, with the expectation the
/// object itself implies (its client data's challenge and origin, its rpIdHash's relying
/// party), so that valid seeds reach the statement checks.
struct Ceremony<'a> {
    client_data_json: &'a [u8],
    object: &'a [u8],
    rp_id: &'static str,
    origin: String,
    challenge: Vec<u8>,
    raw_id: Vec<u8>,
}

impl<'a> Ceremony<'a> {
    fn new(client_data_json: &'a [u8], object: &'a [u8]) -> Self {
        let (origin, challenge) = match parse_client_data(client_data_json) {
            Ok(cd) => (cd.origin, cd.challenge),
            Err(_) => (ORIGIN.to_owned(), CHALLENGE.to_vec()),
        };
        let auth_data = decode_cbor(object).and_then(|v| entry(&v, "authData").and_then(Value::as_bytes).cloned());
        let auth_data = auth_data.unwrap_or_default();
        let rp_hash = auth_data.get(..32).unwrap_or_default();
        let rp_id = fixtures::KNOWN_RP_IDS.iter().find(|rp| sha256(rp.as_bytes()) == rp_hash).copied().unwrap_or(RP_ID);
        let raw_id = AuthenticatorData::parse(&auth_data)
            .ok()
            .and_then(|a| a.attested.map(|c| c.credential_id))
            .unwrap_or_else(|| b"fuzz".to_vec());
        Self { client_data_json, object, rp_id, origin, challenge, raw_id }
    }

    fn verify_with(&self, client_data_json: &[u8], object: &[u8]) -> Result<VerifiedRegistration, RegistrationError> {
        let id = b64url_encode(&self.raw_id);
        let response = RegistrationResponseJson {
            id: id.clone(),
            raw_id: id,
            type_: "public-key".to_owned(),
            response: AttestationResponseJson {
                client_data_json: b64url_encode(client_data_json),
                attestation_object: b64url_encode(object),
                transports: None,
            },
            authenticator_attachment: None,
            client_extension_results: None,
        };
        let expect = RegistrationExpectation { rp_id: self.rp_id, origin: &self.origin, challenge: &self.challenge };
        verify_registration(&response, &expect, fixtures::webauthn_trust(), AT)
    }
}

/// What [`attestation_object`] verifies its input to (for the regression test's checks that
/// valid seeds really verify).
pub fn registration_outcome(data: &[u8]) -> Result<VerifiedRegistration, RegistrationError> {
    let parts = split(data, 2);
    let ceremony = Ceremony::new(parts[0], parts[1]);
    ceremony.verify_with(ceremony.client_data_json, ceremony.object)
}

/// Input = frame(clientDataJSON, attestation object). A verified registration is internally
/// consistent, a trusted one chains through a certificate we issued, and changing the client
/// data or the signature counter afterwards makes every signed format fail.
pub fn attestation_object(data: &[u8]) {
    let parts = split(data, 2);
    let ceremony = Ceremony::new(parts[0], parts[1]);
    let Ok(verified) = ceremony.verify_with(ceremony.client_data_json, ceremony.object) else { return };
    check_verified(&verified);
    assert_eq!(verified.credential_id, ceremony.raw_id);
    if let AttestationTrust::Trusted { .. } = verified.trust {
        let object = decode_cbor(ceremony.object);
        let leaf = object
            .as_ref()
            .and_then(|o| entry(o, "attStmt"))
            .and_then(|s| entry(s, "x5c"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_bytes);
        assert!(leaf.is_some_and(|der| fixtures::listed(fixtures::KNOWN_TBS, &crate::x509::tbs(der))), "forged chain");
    }
    if matches!(verified.format, AttestationFormat::None | AttestationFormat::AndroidSafetynet) {
        return;
    }
    // The client data hash is signed: the same JSON with a trailing space must not verify.
    let padded = [ceremony.client_data_json, b" "].concat();
    assert!(ceremony.verify_with(&padded, ceremony.object).is_err(), "unsigned client data accepted");
    // So is the signature counter.
    if let Some(mut object) = decode_cbor(ceremony.object) {
        let tampered = object.as_map_mut().and_then(|m| {
            m.iter_mut().find(|(k, _)| k.as_text() == Some("authData")).and_then(|(_, v)| v.as_bytes_mut())
        });
        if let Some(byte) = tampered.and_then(|auth_data| auth_data.get_mut(36)) {
            *byte ^= 1;
            let tampered = encode_cbor(&object);
            assert!(ceremony.verify_with(ceremony.client_data_json, &tampered).is_err(), "unsigned counter accepted");
        }
    }
}

/// What every verified registration must satisfy, whatever its input.
fn check_verified(v: &VerifiedRegistration) {
    assert!(v.user_present, "registration without UP");
    assert_eq!(CredentialPublicKey::from_cose(&v.public_key.to_cose()).as_ref(), Ok(&v.public_key), "COSE roundtrip");
    assert_eq!(AttestationFormat::from_fmt(v.format.as_str()), Some(v.format));
    assert_eq!(v.format == AttestationFormat::None, v.attestation_type == AttestationType::None);
    match &v.trust {
        AttestationTrust::Trusted { .. } => {
            assert!(matches!(
                v.attestation_type,
                AttestationType::Basic | AttestationType::AttCa | AttestationType::AnonCa
            ));
            assert!(!matches!(v.format, AttestationFormat::None | AttestationFormat::AndroidSafetynet));
            assert!(v.is_attested(&[]).is_ok());
        }
        AttestationTrust::Untrusted { .. } => assert!(v.is_attested(&[]).is_err()),
        AttestationTrust::SelfOrNone => {
            assert!(matches!(v.attestation_type, AttestationType::SelfAttestation | AttestationType::None));
            assert!(v.is_attested(&[]).is_err());
        }
    }
}

/// A RegistrationResponseJSON document against the soft authenticator's expectation: the
/// document survives serialisation, and a verified registration is consistent.
pub fn registration_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(response) = RegistrationResponseJson::from_json(text) else { return };
    assert_eq!(RegistrationResponseJson::from_json(&response.to_json()).as_ref(), Ok(&response), "JSON roundtrip");
    let expect = RegistrationExpectation { rp_id: RP_ID, origin: ORIGIN, challenge: &CHALLENGE };
    if let Ok(verified) = verify_registration(&response, &expect, fixtures::webauthn_trust(), AT) {
        check_verified(&verified);
        assert_eq!(b64url_decode(&response.raw_id).ok().as_ref(), Some(&verified.credential_id));
    }
}

/// clientDataJSON, raw or base64url: both forms read the same.
pub fn client_data(data: &[u8]) {
    let Ok(parsed) = parse_client_data(data) else { return };
    let raw = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if raw {
        assert_eq!(parse_client_data(b64url_encode(data)).as_ref(), Ok(&parsed), "base64url form");
    } else {
        let decoded = std::str::from_utf8(data).ok().and_then(|t| b64url_decode(t).ok());
        assert!(decoded.is_some_and(|json| parse_client_data(json).as_ref() == Ok(&parsed)), "raw form");
    }
    assert_eq!(b64url_decode(&b64url_encode(&parsed.challenge)).ok(), Some(parsed.challenge));
}

/// Authenticator data: the parsed fields are the bytes', and rebuilding it from the parsed
/// parts (with the canonical COSE key) parses to the same thing.
pub fn authenticator_data(data: &[u8]) {
    let Ok(parsed) = AuthenticatorData::parse(data) else { return };
    assert_eq!(&parsed.rp_id_hash[..], &data[..32]);
    assert_eq!(parsed.flags, data[32]);
    assert_eq!(parsed.sign_count.to_be_bytes(), data[33..37]);
    assert_eq!(parsed.attested.is_some(), parsed.flags & 0x40 != 0);
    assert_eq!(parsed.extensions.is_some(), parsed.flags & 0x80 != 0);
    assert!(parsed.backup_eligible() || !parsed.backed_up());
    let mut rebuilt = data[..37].to_vec();
    if let Some(credential) = &parsed.attested {
        assert!(!credential.credential_id.is_empty() && credential.credential_id.len() <= 1023);
        rebuilt.extend_from_slice(&credential.aaguid);
        rebuilt.extend_from_slice(&(credential.credential_id.len() as u16).to_be_bytes());
        rebuilt.extend_from_slice(&credential.credential_id);
        rebuilt.extend_from_slice(&credential.public_key.to_cose());
    }
    let extensions = parsed.extensions.as_ref().map(encode_cbor);
    rebuilt.extend_from_slice(extensions.as_deref().unwrap_or_default());
    let again = AuthenticatorData::parse(&rebuilt);
    let again = again.as_ref().map_err(|e| e.to_string());
    assert!(again.is_ok(), "rebuilt authenticator data refused: {again:?}");
    if let Ok(again) = again {
        assert_eq!(
            (again.rp_id_hash, again.flags, again.sign_count),
            (parsed.rp_id_hash, parsed.flags, parsed.sign_count)
        );
        assert_eq!(again.attested, parsed.attested);
        assert_eq!(again.extensions.as_ref().map(encode_cbor), extensions);
    }
}

/// Input = frame(COSE_Key, signature) ‖ message. The canonical encoding reads back equal and
/// is a fixed point; no signature verifies two different messages.
pub fn cose_key(data: &[u8]) {
    let parts = split(data, 3);
    let (key, signature, message) = (parts[0], parts[1], parts[2]);
    let Ok(parsed) = CredentialPublicKey::from_cose(key) else { return };
    let canonical = parsed.to_cose();
    let again = CredentialPublicKey::from_cose(&canonical);
    assert_eq!(again.as_ref(), Ok(&parsed), "COSE roundtrip");
    assert_eq!(again.map(|k| k.to_cose()).ok(), Some(canonical.clone()), "canonical encoding is a fixed point");
    let _ = (parsed.algorithm(), parsed.description());
    if parsed.verify(message, signature).is_ok() {
        let mut other = message.to_vec();
        other.push(0);
        assert!(parsed.verify(&other, signature).is_err(), "one signature verifies two messages");
    }
}

/// Input = frame(authenticatorData, clientDataJSON) ‖ signature, as an assertion by the
/// soft authenticator's credential: only messages it signed verify.
pub fn assertion(data: &[u8]) {
    let parts = split(data, 3);
    let id = b64url_encode(fixtures::ASSERTION_CREDENTIAL_ID);
    let response = AuthenticationResponseJson {
        id: id.clone(),
        raw_id: id,
        type_: "public-key".to_owned(),
        response: AssertionResponseJson {
            authenticator_data: b64url_encode(parts[0]),
            client_data_json: b64url_encode(parts[1]),
            signature: b64url_encode(parts[2]),
            user_handle: None,
        },
    };
    check_assertion(&response);
}

/// An AuthenticationResponseJSON document: it survives serialisation, and verifies only if
/// the soft authenticator signed it.
pub fn assertion_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(response) = AuthenticationResponseJson::from_json(text) else { return };
    assert_eq!(AuthenticationResponseJson::from_json(&response.to_json()).as_ref(), Ok(&response), "JSON roundtrip");
    check_assertion(&response);
}

fn check_assertion(response: &AuthenticationResponseJson) {
    let Ok(key) = CredentialPublicKey::from_cose(fixtures::ASSERTION_KEY_COSE) else { return };
    for require_user_verification in [false, true] {
        let expect =
            AssertionExpectation { rp_id: RP_ID, origin: ORIGIN, challenge: &CHALLENGE, require_user_verification };
        let Ok(verified) = verify_assertion(response, &expect, fixtures::ASSERTION_CREDENTIAL_ID, &key) else {
            continue;
        };
        assert!(verified.user_present && (verified.user_verified || !require_user_verification));
        let auth_data = b64url_decode(&response.response.authenticator_data).unwrap_or_default();
        let client_data = b64url_decode(&response.response.client_data_json).unwrap_or_default();
        let signed = [auth_data, sha256(&client_data)].concat();
        assert!(fixtures::listed(fixtures::ASSERTION_SIGNED, &signed), "forged assertion");
    }
}
