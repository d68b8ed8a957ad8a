//! Endorsement-key (EK) certificates: the chain to the TPM manufacturer's roots, the TPM
//! manufacturer/model/firmware the certificate names, and the match with the EK public area.
//!
//! EK certificates (TCG EK Credential Profile) often have an empty subject and a *critical*
//! subjectAltName whose directoryName carries the TPM attributes 2.23.133.2.1 (manufacturer),
//! .2 (model) and .3 (firmware version); generic validators reject them for that. Here the
//! SAN is parsed on purpose, the chain validator accepts the critical SAN, and
//! subjectDirectoryAttributes (TPM spec version, non-critical) is ignored.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Name;

use super::key::KeyError;
use super::public::{PublicKey, TpmPublic};
use crate::chain::{ChainError, validate_chain};
use crate::trust::TrustStore;
use crate::x509;

/// tcg-kp-EKCertificate.
const OID_TCG_KP_EK_CERTIFICATE: &str = "2.23.133.8.1";
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";
/// More certificates than this in one EK certificate file are refused.
const MAX_CERTS_IN_FILE: usize = 8;

/// Why an EK certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EkError {
    #[error("the EK certificate input is neither DER nor PEM certificates: {0}")]
    Unreadable(String),
    #[error("the EK certificate cannot be parsed: {0}")]
    Malformed(String),
    #[error("the EK certificate chain is not trusted: {0}")]
    Chain(#[from] ChainError),
    #[error("the certificate is not an EK certificate: {0}")]
    Requirement(String),
    #[error("the EK certificate's public key cannot be used: {0}")]
    Key(#[from] KeyError),
    #[error(
        "the EK public area the device sent ({ek}) is not the key in the EK certificate ({cert}); \
         the device is presenting another TPM's certificate"
    )]
    KeyMismatch { ek: String, cert: String },
    #[error(
        "the EK is not the one pinned for this device (pin {pinned}, presented {presented}); a different TPM is refused"
    )]
    PinMismatch { pinned: String, presented: String },
}

/// An EK certificate that chains to a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEk {
    /// TPM manufacturer as the certificate states it, e.g. "id:49465800" (IFX).
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// TPM firmware version as the certificate states it, e.g. "id:00070002".
    pub firmware_version: Option<String>,
    /// Subjects from the EK certificate to the trust anchor.
    pub chain: Vec<String>,
    /// The certified EK public key.
    pub public_key: PublicKey,
}

/// Reads an EK certificate file: one DER certificate (trailing zero/0xFF padding from NV
/// storage is removed), or PEM with the EK certificate first and optional intermediates.
pub fn read_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, EkError> {
    if input.starts_with(b"-----")
        || input.iter().take(64).all(|b| b.is_ascii()) && input.windows(5).any(|w| w == b"-----")
    {
        let mut out = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(input) {
            let block = block.map_err(|e| EkError::Unreadable(format!("malformed PEM ({e})")))?;
            if block.label == "CERTIFICATE" {
                out.push(block.contents);
            }
        }
        if out.is_empty() {
            return Err(EkError::Unreadable("the PEM input holds no CERTIFICATE block".to_owned()));
        }
        if out.len() > MAX_CERTS_IN_FILE {
            return Err(EkError::Unreadable(format!("more than {MAX_CERTS_IN_FILE} certificates")));
        }
        return Ok(out);
    }
    let len = crate::x509::der_sequence_length(input)
        .ok_or_else(|| EkError::Unreadable("it does not start with a DER SEQUENCE".to_owned()))?;
    let (cert, padding) =
        input.split_at_checked(len).ok_or_else(|| EkError::Unreadable("the DER is truncated".to_owned()))?;
    if !padding.iter().all(|&b| b == 0 || b == 0xff) {
        return Err(EkError::Unreadable(format!(
            "{} bytes that are not padding follow the certificate",
            padding.len()
        )));
    }
    Ok(vec![cert.to_vec()])
}

/// Validates the EK certificate `cert` (DER) with optional `intermediates` against `trust`
/// at `at`, checks that it is an end-entity EK certificate, and extracts the TPM attributes.
pub fn verify_ek_certificate<C: AsRef<[u8]>>(
    cert: &[u8],
    intermediates: &[C],
    trust: &TrustStore,
    at: OffsetDateTime,
) -> Result<VerifiedEk, EkError> {
    let mut chain_der: Vec<&[u8]> = vec![cert];
    chain_der.extend(intermediates.iter().map(AsRef::as_ref));
    let parsed = chain_der
        .iter()
        .map(|der| x509::parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(EkError::Malformed)?;
    let leaf = parsed.first().ok_or_else(|| EkError::Malformed("no certificate given".to_owned()))?;
    check_ek_requirements(leaf)?;
    let anchor = validate_chain(&chain_der, trust, at)?;
    let (manufacturer, model, firmware_version) = tpm_attributes(leaf);
    Ok(VerifiedEk {
        manufacturer,
        model,
        firmware_version,
        chain: chain_subjects(&parsed, anchor),
        public_key: PublicKey::from_spki(leaf.public_key())?,
    })
}

/// The EK public area the device sent must hold the certified key.
pub fn ek_matches_certificate(ek: &TpmPublic, cert: &VerifiedEk) -> Result<(), EkError> {
    if ek.key == cert.public_key {
        Ok(())
    } else {
        Err(EkError::KeyMismatch { ek: ek.key.describe(), cert: cert.public_key.describe() })
    }
}

/// Refuses an EK whose [`super::key::ek_pin`] differs from the inventory's pin.
pub fn check_ek_pin(ek: &PublicKey, pinned: &[u8]) -> Result<(), EkError> {
    let presented = super::key::ek_pin(ek);
    if crate::tpm::credential::secret_matches(pinned, &presented) {
        Ok(())
    } else {
        Err(EkError::PinMismatch { pinned: hex::encode(pinned), presented: hex::encode(presented) })
    }
}

fn check_ek_requirements(cert: &X509Certificate<'_>) -> Result<(), EkError> {
    let requirement = |msg: String| EkError::Requirement(msg);
    let constraints =
        cert.basic_constraints().map_err(|e| requirement(format!("basicConstraints cannot be parsed ({e})")))?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(requirement("it is a CA certificate (basicConstraints cA is set)".to_owned()));
    }
    for ext in cert.extensions() {
        if let ParsedExtension::ExtendedKeyUsage(eku) = ext.parsed_extension()
            && !eku.other.iter().any(|oid| oid.to_id_string() == OID_TCG_KP_EK_CERTIFICATE)
        {
            return Err(requirement(
                "its extended key usage does not include tcg-kp-EKCertificate (2.23.133.8.1)".to_owned(),
            ));
        }
    }
    Ok(())
}

/// (manufacturer, model, version) from the SAN directoryName, falling back to the subject.
fn tpm_attributes(cert: &X509Certificate<'_>) -> (Option<String>, Option<String>, Option<String>) {
    let mut names: Vec<&X509Name<'_>> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DirectoryName(dn) = name {
                names.push(dn);
            }
        }
    }
    names.push(cert.subject());
    let find = |oid: &str| {
        names.iter().find_map(|dn| {
            dn.iter_attributes().find(|a| a.attr_type().to_id_string() == oid).map(|a| match a.as_str() {
                Ok(s) => s.to_owned(),
                Err(_) => format!("#{}", hex::encode(a.as_slice())),
            })
        })
    };
    (find(OID_TPM_MANUFACTURER), find(OID_TPM_MODEL), find(OID_TPM_VERSION))
}

/// Subjects along the (already validated) path: follow issuer names through the given
/// certificates, then the anchor.
fn chain_subjects(parsed: &[X509Certificate<'_>], anchor: String) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = vec![false; parsed.len()];
    let mut current = parsed.first();
    while let Some(cert) = current {
        let subject = x509::name_string(cert.subject());
        if subject == anchor && x509::names_match(cert.subject(), cert.issuer()) {
            break;
        }
        out.push(subject);
        current = parsed.iter().enumerate().find_map(|(i, c)| {
            let next = !used.get(i).copied().unwrap_or(true) && x509::names_match(c.subject(), cert.issuer()) && i != 0;
            if next && let Some(u) = used.get_mut(i) {
                *u = true;
            }
            next.then_some(c)
        });
        if current.is_some_and(|c| x509::name_string(c.subject()) == anchor) {
            break;
        }
    }
    out.push(anchor);
    out
}
