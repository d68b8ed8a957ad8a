//! X.509 helpers shared by the chain validator and the attestation formats: strict parsing,
//! signature verification with `ring`, and readable names.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use time::OffsetDateTime;
use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name};

use crate::cose::alg;

/// Certificates in attestation chains are 0.5–2 KiB; this bounds pathological input.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Parses one DER certificate that must span all of `der`.
pub fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    if der.len() > MAX_CERT_BYTES {
        return Err(format!("it is {} bytes, more than the {MAX_CERT_BYTES}-byte limit", der.len()));
    }
    check_envelope(der)?;
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} bytes follow the certificate", rest.len())),
        Err(e) => Err(format!("it is not a DER X.509 certificate ({e})")),
    }
}

/// Splits one DER element off the front of `input`: (element, its full encoding, rest).
fn next_element(input: &[u8]) -> Result<(Any<'_>, &[u8], &[u8]), String> {
    let (rest, any) = Any::from_der(input).map_err(|e| format!("it is not DER ({e})"))?;
    let raw = input.get(..input.len() - rest.len()).unwrap_or_default();
    Ok((any, raw, rest))
}

fn is_universal(any: &Any<'_>, tag: Tag) -> bool {
    any.class() == Class::Universal && any.tag() == tag
}

/// x509-parser checks tag numbers but not always tag classes or the BIT STRING padding of
/// the parts outside the signed TBSCertificate. Those parts are checked strictly here so
/// that no byte of an accepted certificate can change without it being rejected.
fn check_envelope(der: &[u8]) -> Result<(), String> {
    let bad = |what: &str| Err(format!("its {what} is not strict DER"));
    let (cert, _, rest) = next_element(der)?;
    if !rest.is_empty() || !is_universal(&cert, Tag::Sequence) || !cert.header.is_constructed() {
        return bad("outer SEQUENCE");
    }
    let (tbs, _, rest) = next_element(cert.data)?;
    let (outer_alg, outer_alg_raw, rest) = next_element(rest)?;
    let (signature, _, rest) = next_element(rest)?;
    if !rest.is_empty() || !is_universal(&tbs, Tag::Sequence) || !is_universal(&outer_alg, Tag::Sequence) {
        return bad("certificate structure");
    }
    if !is_universal(&signature, Tag::BitString)
        || signature.header.is_constructed()
        || signature.data.first() != Some(&0)
    {
        return bad("signature BIT STRING");
    }
    // RFC 5280 §4.1.1.2: signatureAlgorithm must be identical to TBSCertificate.signature,
    // whose bytes the signature covers. TBSCertificate starts with an optional [0] version
    // and the serial number.
    let (first, _, after_first) = next_element(tbs.data)?;
    let after_serial = if first.class() == Class::ContextSpecific { next_element(after_first)?.2 } else { after_first };
    let (_, inner_alg_raw, _) = next_element(after_serial)?;
    if inner_alg_raw != outer_alg_raw {
        return bad("signatureAlgorithm (it differs from the signed one)");
    }
    Ok(())
}

/// The subject (or any name) as "CN=…, O=…", falling back to hex for undecodable names.
pub fn name_string(name: &X509Name<'_>) -> String {
    let text = name.to_string();
    if text.starts_with("<X509Error") {
        return format!("#{}", hex::encode(name.as_raw()));
    }
    if text.is_empty() { "(empty subject)".to_owned() } else { text }
}

/// RFC 5280 §7.1-style comparison: byte-identical, or the same attribute types with values
/// equal after case folding and whitespace collapsing (so PrintableString vs UTF8String
/// encodings of the same name match). Signatures, not names, establish the chain.
pub fn names_match(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    if a.as_raw() == b.as_raw() {
        return true;
    }
    let normalise = |name: &X509Name<'_>| -> Vec<(String, String)> {
        name.iter_attributes()
            .map(|attr| {
                let value = match attr.as_str() {
                    Ok(s) => s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
                    Err(_) => hex::encode(attr.as_slice()),
                };
                (attr.attr_type().to_id_string(), value)
            })
            .collect()
    };
    normalise(a) == normalise(b)
}

pub fn not_before(cert: &X509Certificate<'_>) -> OffsetDateTime {
    cert.validity().not_before.to_datetime()
}

pub fn not_after(cert: &X509Certificate<'_>) -> OffsetDateTime {
    cert.validity().not_after.to_datetime()
}

/// Why a signature made by a certificate's key could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("the signature algorithm does not fit the signer's {0} key")]
    KeyMismatch(&'static str),
    #[error("the signature does not verify")]
    Invalid,
}

pub fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> &'static str {
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_EC_PUBLIC_KEY => match curve_oid(spki).as_deref() {
            Some(OID_P256) => "P-256",
            Some(OID_P384) => "P-384",
            _ => "EC (unsupported curve)",
        },
        OID_RSA_ENCRYPTION => "RSA",
        OID_ED25519 => "Ed25519",
        _ => "unsupported",
    }
}

fn curve_oid(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    let params = spki.algorithm.parameters.as_ref()?;
    params.as_oid().ok().map(|oid| oid.to_id_string())
}

fn verify_raw(
    algorithm: &'static dyn VerificationAlgorithm,
    spki: &SubjectPublicKeyInfo<'_>,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(message, sig)
        .map_err(|_| SignatureError::Invalid)
}

fn ecdsa(spki: &SubjectPublicKeyInfo<'_>, sha384: bool) -> Result<&'static dyn VerificationAlgorithm, SignatureError> {
    Ok(match (key_kind(spki), sha384) {
        ("P-256", false) => &signature::ECDSA_P256_SHA256_ASN1,
        ("P-256", true) => &signature::ECDSA_P256_SHA384_ASN1,
        ("P-384", false) => &signature::ECDSA_P384_SHA256_ASN1,
        ("P-384", true) => &signature::ECDSA_P384_SHA384_ASN1,
        (kind, _) => return Err(SignatureError::KeyMismatch(kind)),
    })
}

fn require_kind(spki: &SubjectPublicKeyInfo<'_>, wanted: &str) -> Result<(), SignatureError> {
    match key_kind(spki) {
        kind if kind == wanted => Ok(()),
        kind => Err(SignatureError::KeyMismatch(kind)),
    }
}

/// Verifies an attestation-statement signature made with the certificate key `spki` under
/// the COSE algorithm `cose_alg`. SHA-1 (RS1) is accepted only when `allow_sha1` is set:
/// TPMs in Windows Hello still sign with it.
pub fn verify_statement_signature(
    spki: &SubjectPublicKeyInfo<'_>,
    cose_alg: i64,
    allow_sha1: bool,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let algorithm: &'static dyn VerificationAlgorithm = match cose_alg {
        alg::ES256 => ecdsa(spki, false)?,
        alg::ES384 => ecdsa(spki, true)?,
        alg::EDDSA => {
            require_kind(spki, "Ed25519")?;
            &signature::ED25519
        }
        alg::RS1 if allow_sha1 => {
            require_kind(spki, "RSA")?;
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        alg::RS256 | alg::RS384 | alg::RS512 | alg::PS256 | alg::PS384 | alg::PS512 => {
            require_kind(spki, "RSA")?;
            match cose_alg {
                alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            }
        }
        other => return Err(SignatureError::UnsupportedAlgorithm(format!("COSE {other}"))),
    };
    verify_raw(algorithm, spki, message, sig)
}

/// Verifies `cert`'s signature with the issuer's key. SHA-1 and other weak certificate
/// signatures are refused: a forged intermediate would defeat the whole chain.
pub fn verify_certificate_signature(
    cert: &X509Certificate<'_>,
    issuer_spki: &SubjectPublicKeyInfo<'_>,
) -> Result<(), SignatureError> {
    let outer = &cert.signature_algorithm;
    if outer.algorithm != cert.tbs_certificate.signature.algorithm {
        return Err(SignatureError::UnsupportedAlgorithm(
            "(the outer and inner signature algorithms differ)".to_owned(),
        ));
    }
    let algorithm = certificate_algorithm(outer, issuer_spki)?;
    verify_raw(algorithm, issuer_spki, cert.tbs_certificate.as_ref(), cert.signature_value.data.as_ref())
}

fn certificate_algorithm(
    alg_id: &AlgorithmIdentifier<'_>,
    issuer_spki: &SubjectPublicKeyInfo<'_>,
) -> Result<&'static dyn VerificationAlgorithm, SignatureError> {
    let oid = alg_id.algorithm.to_id_string();
    let rsa = |algorithm: &'static dyn VerificationAlgorithm| require_kind(issuer_spki, "RSA").map(|()| algorithm);
    match oid.as_str() {
        "1.2.840.113549.1.1.11" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "1.2.840.113549.1.1.12" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "1.2.840.113549.1.1.13" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "1.2.840.113549.1.1.10" => rsa(pss_algorithm(alg_id)
            .ok_or_else(|| SignatureError::UnsupportedAlgorithm("RSASSA-PSS with these parameters".to_owned()))?),
        "1.2.840.10045.4.3.2" => ecdsa(issuer_spki, false),
        "1.2.840.10045.4.3.3" => ecdsa(issuer_spki, true),
        OID_ED25519 => require_kind(issuer_spki, "Ed25519").map(|()| {
            let ed: &'static dyn VerificationAlgorithm = &signature::ED25519;
            ed
        }),
        _ => Err(SignatureError::UnsupportedAlgorithm(oid)),
    }
}

/// ring's PSS verifiers use MGF1 with the same hash and a salt as long as the digest, which
/// is what every real PSS certificate uses; other parameter sets fail verification.
fn pss_algorithm(alg_id: &AlgorithmIdentifier<'_>) -> Option<&'static dyn VerificationAlgorithm> {
    let params = RsaSsaPssParams::try_from(alg_id.parameters.as_ref()?).ok()?;
    match params.hash_algorithm_oid().to_id_string().as_str() {
        "2.16.840.1.101.3.4.2.1" => Some(&signature::RSA_PSS_2048_8192_SHA256),
        "2.16.840.1.101.3.4.2.2" => Some(&signature::RSA_PSS_2048_8192_SHA384),
        "2.16.840.1.101.3.4.2.3" => Some(&signature::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

/// Finds an extension by dotted OID, refusing certificates that carry it twice.
pub fn find_extension<'a>(
    cert: &'a X509Certificate<'_>,
    oid: &str,
) -> Result<Option<&'a x509_parser::extensions::X509Extension<'a>>, String> {
    let mut found = cert.extensions().iter().filter(|ext| ext.oid.to_id_string() == oid);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("the certificate carries extension {oid} more than once"));
    }
    Ok(first)
}

/// The full length of the DER SEQUENCE at the start of `input` (definite lengths only), so a
/// certificate can be cut from padding or from the certificates that follow it (TPM NV indices
/// hold them that way). None when `input` does not start with a whole SEQUENCE header.
pub fn der_sequence_length(input: &[u8]) -> Option<usize> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = rest.get(..n)?.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    len.checked_add(2 + n)
}
