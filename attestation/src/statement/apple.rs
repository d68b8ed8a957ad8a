//! The "apple" anonymous attestation format (WebAuthn §8.8).

use ring::digest;
use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};

use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::registration::AttestationType;
use crate::x509;

/// Apple's extension carrying SHA-256(authenticatorData ‖ clientDataHash).
const OID_APPLE_NONCE: &str = "1.2.840.113635.100.8.2";

pub(super) fn verify(map: &Map<'_>, ctx: &Context<'_>) -> Result<Outcome, StatementError> {
    let x5c = super::required_x5c(map)?;
    let leaf = super::parse_leaf(x5c.first().copied().unwrap_or_default())?;
    let ext =
        x509::find_extension(&leaf, OID_APPLE_NONCE).map_err(StatementError::CertificateRequirement)?.ok_or_else(
            || StatementError::CertificateRequirement("the leaf certificate lacks Apple's nonce extension".to_owned()),
        )?;
    let nonce = parse_nonce(ext.value)
        .ok_or_else(|| StatementError::CertificateRequirement("Apple's nonce extension is malformed".to_owned()))?;
    let expected = digest::digest(&digest::SHA256, &ctx.signed_data());
    if nonce != expected.as_ref() {
        return Err(StatementError::NonceMismatch);
    }
    if !ctx.credential.public_key.matches_spki(leaf.public_key()) {
        return Err(StatementError::KeyMismatch);
    }
    Ok(Outcome { attestation_type: AttestationType::AnonCa, trust: super::chain_trust(&x5c, ctx) })
}

/// `SEQUENCE { nonce [1] EXPLICIT OCTET STRING }`.
fn parse_nonce(value: &[u8]) -> Option<&[u8]> {
    let (rest, seq) = Any::from_der(value).ok()?;
    if !rest.is_empty() || seq.tag() != Tag::Sequence {
        return None;
    }
    let (rest, tagged) = Any::from_der(seq.data).ok()?;
    if !rest.is_empty() || tagged.class() != Class::ContextSpecific || tagged.tag() != Tag(1) {
        return None;
    }
    let (rest, octets) = Any::from_der(tagged.data).ok()?;
    if !rest.is_empty() || octets.tag() != Tag::OctetString {
        return None;
    }
    Some(octets.data)
}
