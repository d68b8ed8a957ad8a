//! Attestation statement formats (WebAuthn §8). Each format checks its statement against
//! the authenticator data and client data hash and, where it has a certificate chain,
//! validates that chain against the trust store.

mod android_key;
mod apple;
mod fido_u2f;
mod packed;
mod tpm;

use ciborium::Value;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::authdata::{AttestedCredential, AuthenticatorData};
use crate::cbor::Map;
use crate::chain;
use crate::registration::{AttestationFormat, AttestationTrust, AttestationType};
use crate::trust::TrustStore;
use crate::x509;

/// FIDO's id-fido-gen-ce-aaguid: the authenticator model in an attestation certificate.
const OID_FIDO_AAGUID: &str = "1.3.6.1.4.1.45724.1.1.4";

/// Why an attestation statement is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("the statement is malformed: {0}")]
    Malformed(String),
    #[error("the statement uses COSE algorithm {0}, which is not supported here")]
    UnsupportedAlgorithm(i64),
    #[error("the statement algorithm {statement} differs from the credential key's algorithm {credential}")]
    AlgorithmMismatch { statement: i64, credential: i64 },
    #[error("the attestation signature does not verify: {0}")]
    BadSignature(String),
    #[error("the attestation certificate cannot be used: {0}")]
    Certificate(String),
    #[error("the attestation certificate violates the format's requirements: {0}")]
    CertificateRequirement(String),
    #[error(
        "the attestation certificate names AAGUID {certificate}, but the authenticator data says {authenticator_data}"
    )]
    AaguidMismatch { certificate: uuid::Uuid, authenticator_data: uuid::Uuid },
    #[error("the attestation certificate's public key is not the credential public key")]
    KeyMismatch,
    #[error("the statement is bound to a different challenge than this registration's client data")]
    ChallengeMismatch,
    #[error("the attested key's authorisations are not acceptable: {0}")]
    Authorization(String),
    #[error("the certificate nonce does not match SHA-256(authenticatorData ‖ clientDataHash)")]
    NonceMismatch,
    #[error("ECDAA attestation was removed from WebAuthn and is not supported")]
    Ecdaa,
    #[error("fields the fido-u2f signature does not cover have non-canonical values: {0}")]
    UnsignedFields(String),
    #[error("the TPM structures are invalid: {0}")]
    Tpm(String),
}

/// Everything a format needs to check a statement.
pub(crate) struct Context<'a> {
    pub auth_data_bytes: &'a [u8],
    pub auth_data: &'a AuthenticatorData,
    pub credential: &'a AttestedCredential,
    pub client_data_hash: &'a [u8; 32],
    pub trust: &'a TrustStore,
    pub at: OffsetDateTime,
}

impl Context<'_> {
    /// authenticatorData ‖ clientDataHash, what most formats sign.
    pub fn signed_data(&self) -> Vec<u8> {
        [self.auth_data_bytes, self.client_data_hash.as_slice()].concat()
    }
}

pub(crate) struct Outcome {
    pub attestation_type: AttestationType,
    pub trust: AttestationTrust,
}

pub(crate) fn verify(
    format: AttestationFormat,
    att_stmt: &Value,
    ctx: &Context<'_>,
) -> Result<Outcome, StatementError> {
    let map = Map::new(att_stmt).map_err(|e| StatementError::Malformed(e.to_string()))?;
    match format {
        AttestationFormat::None => {
            if !map.is_empty() {
                return Err(StatementError::Malformed("the \"none\" format must have an empty statement".to_owned()));
            }
            Ok(Outcome { attestation_type: AttestationType::None, trust: AttestationTrust::SelfOrNone })
        }
        AttestationFormat::Packed => packed::verify(&map, ctx),
        AttestationFormat::FidoU2f => fido_u2f::verify(&map, ctx),
        AttestationFormat::AndroidKey => android_key::verify(&map, ctx),
        AttestationFormat::Apple => apple::verify(&map, ctx),
        AttestationFormat::Tpm => tpm::verify(&map, ctx),
        AttestationFormat::AndroidSafetynet => Ok(Outcome {
            attestation_type: AttestationType::Basic,
            trust: AttestationTrust::Untrusted {
                reason: "the android-safetynet attestation format is deprecated by Google and is not verified; \
                         the credential is unattested"
                    .to_owned(),
            },
        }),
    }
}

/// The attestation key identifier of a verified statement's certificate, as FIDO metadata names
/// U2F batch keys (`attestationCertificateKeyIdentifiers`): lowercase hex SHA-1 of the leaf's
/// subjectPublicKey bits. None when the statement carries no certificate. SHA-1 here names a key
/// the way the metadata does; it is not relied on for integrity.
pub(crate) fn attestation_key_id(att_stmt: &Value) -> Option<String> {
    let map = Map::new(att_stmt).ok()?;
    let x5c = x5c(&map).ok()??;
    let leaf = parse_leaf(x5c.first()?).ok()?;
    let key_bits = &leaf.public_key().subject_public_key.data;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key_bits);
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The required integer "alg".
pub(crate) fn alg(map: &Map<'_>) -> Result<i64, StatementError> {
    let value = map.text("alg").ok_or_else(|| missing("alg"))?;
    crate::cbor::int_value(value).ok_or_else(|| wrong_type("alg", "an integer"))
}

/// The required byte string "sig".
pub(crate) fn sig<'a>(map: &Map<'a>) -> Result<&'a [u8], StatementError> {
    let value = map.text("sig").ok_or_else(|| missing("sig"))?;
    value.as_bytes().map(Vec::as_slice).ok_or_else(|| wrong_type("sig", "a byte string"))
}

/// The optional "x5c": a non-empty array of DER certificates, leaf first.
pub(crate) fn x5c<'a>(map: &Map<'a>) -> Result<Option<Vec<&'a [u8]>>, StatementError> {
    let Some(value) = map.text("x5c") else { return Ok(None) };
    let array = value.as_array().ok_or_else(|| wrong_type("x5c", "an array"))?;
    if array.is_empty() {
        return Err(StatementError::Malformed("x5c is empty".to_owned()));
    }
    if array.len() > chain::MAX_CHAIN_LEN {
        return Err(StatementError::Malformed(format!(
            "x5c has {} certificates; at most {} are accepted",
            array.len(),
            chain::MAX_CHAIN_LEN
        )));
    }
    array
        .iter()
        .map(|v| v.as_bytes().map(Vec::as_slice).ok_or_else(|| wrong_type("x5c[]", "a byte string")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The required x5c, for formats where certificates are mandatory.
pub(crate) fn required_x5c<'a>(map: &Map<'a>) -> Result<Vec<&'a [u8]>, StatementError> {
    x5c(map)?.ok_or_else(|| missing("x5c"))
}

pub(crate) fn parse_leaf(der: &[u8]) -> Result<X509Certificate<'_>, StatementError> {
    x509::parse_certificate(der).map_err(|e| StatementError::Certificate(format!("x5c[0]: {e}")))
}

fn missing(field: &str) -> StatementError {
    StatementError::Malformed(format!("the required field \"{field}\" is missing"))
}

fn wrong_type(field: &str, expected: &str) -> StatementError {
    StatementError::Malformed(format!("\"{field}\" must be {expected}"))
}

/// The chain verdict: a valid statement whose chain does not reach an anchor is not an
/// error, only untrusted.
pub(crate) fn chain_trust(x5c: &[&[u8]], ctx: &Context<'_>) -> AttestationTrust {
    match chain::validate_chain(x5c, ctx.trust, ctx.at) {
        Ok(anchor_subject) => AttestationTrust::Trusted { anchor_subject },
        Err(e) => AttestationTrust::Untrusted { reason: e.to_string() },
    }
}

/// If the certificate carries id-fido-gen-ce-aaguid, it must be non-critical and equal the
/// AAGUID in the authenticator data.
pub(crate) fn check_aaguid_extension(cert: &X509Certificate<'_>, ctx: &Context<'_>) -> Result<(), StatementError> {
    let Some(ext) = x509::find_extension(cert, OID_FIDO_AAGUID).map_err(StatementError::CertificateRequirement)? else {
        return Ok(());
    };
    if ext.critical {
        return Err(StatementError::CertificateRequirement("the AAGUID extension must not be critical".to_owned()));
    }
    // extnValue holds a DER OCTET STRING (tag 4, length 16) wrapping the 16 AAGUID bytes.
    let aaguid = match ext.value {
        [0x04, 0x10, rest @ ..] => <[u8; 16]>::try_from(rest).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        StatementError::CertificateRequirement("the AAGUID extension is not a 16-byte OCTET STRING".to_owned())
    })?;
    if aaguid != ctx.credential.aaguid {
        return Err(StatementError::AaguidMismatch {
            certificate: uuid::Uuid::from_bytes(aaguid),
            authenticator_data: uuid::Uuid::from_bytes(ctx.credential.aaguid),
        });
    }
    Ok(())
}

/// basicConstraints must be absent or say cA = false for an attestation (leaf) certificate.
pub(crate) fn require_not_ca(cert: &X509Certificate<'_>) -> Result<(), StatementError> {
    let constraints = cert
        .basic_constraints()
        .map_err(|e| StatementError::CertificateRequirement(format!("basicConstraints cannot be parsed ({e})")))?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(StatementError::CertificateRequirement(
            "the attestation certificate must not be a CA (basicConstraints cA must be false)".to_owned(),
        ));
    }
    Ok(())
}
