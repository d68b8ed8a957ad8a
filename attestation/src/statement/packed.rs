//! The "packed" format (WebAuthn §8.2): basic attestation with an x5c chain, or self
//! attestation signed by the credential key itself.

use x509_parser::certificate::X509Certificate;
use x509_parser::x509::{AttributeTypeAndValue, X509Version};

use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::registration::{AttestationTrust, AttestationType};
use crate::x509;

const REQUIRED_OU: &str = "Authenticator Attestation";

pub(super) fn verify(map: &Map<'_>, ctx: &Context<'_>) -> Result<Outcome, StatementError> {
    if map.text("ecdaaKeyId").is_some() {
        return Err(StatementError::Ecdaa);
    }
    let alg = super::alg(map)?;
    let sig = super::sig(map)?;
    let signed = ctx.signed_data();
    let Some(x5c) = super::x5c(map)? else {
        let key = &ctx.credential.public_key;
        if alg != key.algorithm() {
            return Err(StatementError::AlgorithmMismatch { statement: alg, credential: key.algorithm() });
        }
        key.verify(&signed, sig).map_err(|e| StatementError::BadSignature(e.to_string()))?;
        return Ok(Outcome { attestation_type: AttestationType::SelfAttestation, trust: AttestationTrust::SelfOrNone });
    };
    let leaf_der = x5c.first().copied().unwrap_or_default();
    let leaf = super::parse_leaf(leaf_der)?;
    x509::verify_statement_signature(leaf.public_key(), alg, false, &signed, sig)
        .map_err(|e| StatementError::BadSignature(e.to_string()))?;
    check_leaf(&leaf)?;
    super::check_aaguid_extension(&leaf, ctx)?;
    Ok(Outcome { attestation_type: AttestationType::Basic, trust: super::chain_trust(&x5c, ctx) })
}

/// WebAuthn §8.2.1: version 3, subject with C, O, OU = "Authenticator Attestation" and CN,
/// and not a CA.
fn check_leaf(leaf: &X509Certificate<'_>) -> Result<(), StatementError> {
    let requirement = |msg: String| StatementError::CertificateRequirement(msg);
    if leaf.version() != X509Version::V3 {
        return Err(requirement("the attestation certificate must be X.509 version 3".to_owned()));
    }
    let subject = leaf.subject();
    let country = first_value(subject.iter_country());
    if !country.as_deref().is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(requirement("the subject must contain C, a two-letter ISO 3166 country code".to_owned()));
    }
    if first_value(subject.iter_organization()).is_none_or(|o| o.is_empty()) {
        return Err(requirement("the subject must contain O, the authenticator vendor".to_owned()));
    }
    let ou = first_value(subject.iter_organizational_unit());
    if ou.as_deref() != Some(REQUIRED_OU) {
        return Err(requirement(format!(
            "the subject OU must be \"{REQUIRED_OU}\" but is {}",
            ou.map_or_else(|| "missing".to_owned(), |ou| format!("\"{ou}\""))
        )));
    }
    if first_value(subject.iter_common_name()).is_none_or(|cn| cn.is_empty()) {
        return Err(requirement("the subject must contain CN".to_owned()));
    }
    super::require_not_ca(leaf)
}

/// The first attribute of a kind, if it is a string.
fn first_value<'b, 'a: 'b>(mut attributes: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>) -> Option<String> {
    attributes.next().and_then(|attr| attr.as_str().ok()).map(str::to_owned)
}
