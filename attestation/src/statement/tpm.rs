//! The "tpm" format (WebAuthn §8.3): a TPM's attestation key (AIK) certifies the credential
//! key; the AIK certificate chains to the TPM vendor's or Microsoft's root.

use ring::digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Version;

use super::tpm_structs::{self as tpm, TpmKey};
use super::{Context, Outcome, StatementError};
use crate::cbor::Map;
use crate::cose::{CredentialPublicKey, alg};
use crate::registration::AttestationType;
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

    let pub_area = tpm::parse_pub_area(pub_area_bytes).map_err(bad)?;
    if !key_matches(&pub_area.key, &ctx.credential.public_key) {
        return Err(StatementError::KeyMismatch);
    }
    let cert_info = tpm::parse_cert_info(cert_info_bytes).map_err(bad)?;
    let hash = statement_hash(alg)?;
    if cert_info.extra_data != digest::digest(hash, &ctx.signed_data()).as_ref() {
        return Err(StatementError::ChallengeMismatch);
    }
    let name_hash = tpm_hash(pub_area.name_alg)
        .ok_or_else(|| bad(format!("pubArea nameAlg 0x{:04x} is not supported", pub_area.name_alg)))?;
    let expected_name =
        [&pub_area.name_alg.to_be_bytes()[..], digest::digest(name_hash, pub_area_bytes).as_ref()].concat();
    if cert_info.attested_name != expected_name.as_slice() {
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

fn tpm_hash(name_alg: u16) -> Option<&'static digest::Algorithm> {
    match name_alg {
        tpm::TPM_ALG_SHA1 => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        tpm::TPM_ALG_SHA256 => Some(&digest::SHA256),
        tpm::TPM_ALG_SHA384 => Some(&digest::SHA384),
        tpm::TPM_ALG_SHA512 => Some(&digest::SHA512),
        _ => None,
    }
}

/// The pubArea key must be the credential key from the authenticator data.
fn key_matches(key: &TpmKey<'_>, credential: &CredentialPublicKey) -> bool {
    match key {
        TpmKey::Rsa { modulus, exponent } => {
            // An exponent of 0 in TPMS_RSA_PARMS means the default, 65537.
            let exponent = if *exponent == 0 { 65537 } else { *exponent };
            credential.rsa_components_match(modulus, &exponent.to_be_bytes())
        }
        TpmKey::Ecc { curve, x, y } => match *curve {
            tpm::TPM_ECC_NIST_P256 => credential.ec2_components_match(1, x, y),
            tpm::TPM_ECC_NIST_P384 => credential.ec2_components_match(2, x, y),
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
