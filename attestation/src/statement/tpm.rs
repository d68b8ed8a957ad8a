//! The "tpm" format (WebAuthn §8.3): a TPM's attestation key (AIK) certifies the credential
//! key; the AIK certificate chains to the TPM vendor's or Microsoft's root.

use ring::digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Version;

use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::cose::{CredentialPublicKey, alg};
use crate::registration::AttestationType;
use crate::tpm::{Attest, AttestInfo, PublicKey, TPM_ECC_NIST_P256, TPM_ECC_NIST_P384, TpmPublic};
use crate::x509;

/// tcg-kp-AIKCertificate: the extended key usage an AIK certificate must carry.
const OID_TCG_KP_AIK_CERTIFICATE: &str = "2.23.133.8.3";
/// TPM manufacturer, model and firmware version attributes in the SAN directoryName.
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";

pub(super) fn verify(map: &Map<'_>, ctx: &Context<'_>) -> Result<Outcome, StatementError> {
    let bad = |msg: String| StatementError::Tpm(msg);
    let ver = map.text("ver").and_then(|v| v.as_text());
    if ver != Some("2.0") {
        return Err(StatementError::Malformed("\"ver\" must be \"2.0\"".to_owned()));
    }
    if map.text("ecdaaKeyId").is_some() {
        return Err(StatementError::Ecdaa);
    }
    let alg = super::alg(map)?;
    let sig = super::sig(map)?;
    let x5c = super::required_x5c(map)?;
    let cert_info_bytes = bytes_field(map, "certInfo")?;
    let pub_area_bytes = bytes_field(map, "pubArea")?;

    let pub_area = TpmPublic::from_tpmt(pub_area_bytes).map_err(|e| bad(format!("pubArea: {e}")))?;
    // A signing key has no symmetric algorithm; anything else is not a credential key.
    if pub_area.symmetric.is_some() {
        return Err(bad("pubArea describes a key with a symmetric algorithm, not a signing key".to_owned()));
    }
    if !key_matches(&pub_area.key, &ctx.credential.public_key) {
        return Err(StatementError::KeyMismatch);
    }
    let cert_info = Attest::parse(cert_info_bytes).map_err(|e| bad(format!("certInfo: {e}")))?;
    let AttestInfo::Certify { name: attested_name, .. } = &cert_info.info else {
        return Err(bad("certInfo is not of type TPM_ST_ATTEST_CERTIFY".to_owned()));
    };
    let hash = statement_hash(alg)?;
    if cert_info.extra_data != digest::digest(hash, &ctx.signed_data()).as_ref() {
        return Err(StatementError::ChallengeMismatch);
    }
    if *attested_name != pub_area.name() {
        return Err(bad("certInfo certifies a different key than pubArea".to_owned()));
    }

    let aik = super::parse_leaf(x5c.first().copied().unwrap_or_default())?;
    x509::verify_statement_signature(aik.public_key(), alg, true, cert_info_bytes, sig)
        .map_err(|e| StatementError::BadSignature(e.to_string()))?;
    check_aik_certificate(&aik)?;
    super::check_aaguid_extension(&aik, ctx)?;
    Ok(Outcome { attestation_type: AttestationType::AttCa, trust: super::chain_trust(&x5c, ctx) })
}

fn bytes_field<'a>(map: &Map<'a>, name: &str) -> Result<&'a [u8], StatementError> {
    map.text(name)
        .and_then(|v| v.as_bytes())
        .map(Vec::as_slice)
        .ok_or_else(|| StatementError::Malformed(format!("\"{name}\" is missing or not a byte string")))
}

/// The digest the statement's signature algorithm uses, which also hashes attToBeSigned
/// into extraData.
fn statement_hash(cose_alg: i64) -> Result<&'static digest::Algorithm, StatementError> {
    Ok(match cose_alg {
        alg::RS1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        alg::RS256 | alg::PS256 | alg::ES256 => &digest::SHA256,
        alg::RS384 | alg::PS384 | alg::ES384 => &digest::SHA384,
        alg::RS512 | alg::PS512 => &digest::SHA512,
        other => return Err(StatementError::UnsupportedAlgorithm(other)),
    })
}

/// The pubArea key must be the credential key from the authenticator data.
fn key_matches(key: &PublicKey, credential: &CredentialPublicKey) -> bool {
    match key {
        // The parser already turned an exponent of 0 (the default) into 65537.
        PublicKey::Rsa { modulus, exponent } => credential.rsa_components_match(modulus, &exponent.to_be_bytes()),
        PublicKey::Ecc { curve, x, y } => match *curve {
            TPM_ECC_NIST_P256 => credential.ec2_components_match(1, x, y),
            TPM_ECC_NIST_P384 => credential.ec2_components_match(2, x, y),
            _ => false,
        },
    }
}

/// WebAuthn §8.3.2: version 3, empty subject, a SAN naming the TPM, the AIK extended key
/// usage, and not a CA.
fn check_aik_certificate(aik: &X509Certificate<'_>) -> Result<(), StatementError> {
    let requirement = |msg: &str| StatementError::CertificateRequirement(msg.to_owned());
    if aik.version() != X509Version::V3 {
        return Err(requirement("the AIK certificate must be X.509 version 3"));
    }
    if aik.subject().iter_attributes().next().is_some() {
        return Err(requirement("the AIK certificate subject must be empty"));
    }
    let san = aik
        .subject_alternative_name()
        .map_err(|e| StatementError::CertificateRequirement(format!("subjectAltName cannot be parsed ({e})")))?
        .ok_or_else(|| requirement("the AIK certificate lacks a subjectAltName naming the TPM"))?;
    let names_tpm = san.value.general_names.iter().any(|name| match name {
        GeneralName::DirectoryName(dn) => [OID_TPM_MANUFACTURER, OID_TPM_MODEL, OID_TPM_VERSION]
            .iter()
            .all(|oid| dn.iter_attributes().any(|a| a.attr_type().to_id_string() == *oid)),
        _ => false,
    });
    if !names_tpm {
        return Err(requirement("the AIK certificate's subjectAltName lacks the TPM manufacturer, model and version"));
    }
    let has_aik_usage = aik.extensions().iter().any(|ext| match ext.parsed_extension() {
        ParsedExtension::ExtendedKeyUsage(eku) => {
            eku.other.iter().any(|oid| oid.to_id_string() == OID_TCG_KP_AIK_CERTIFICATE)
        }
        _ => false,
    });
    if !has_aik_usage {
        return Err(requirement("the AIK certificate's extended key usage lacks tcg-kp-AIKCertificate (2.23.133.8.3)"));
    }
    super::require_not_ca(aik)
}
