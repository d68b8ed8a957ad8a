//! Test EK certificates: a TPM's endorsement key certified by a throwaway CA, for tests that
//! replace a software TPM's EK certificate (in NV) with one from a chain they control.

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use crate::SoftKeyError;

/// id-pe-authorityInfoAccess.
const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-caIssuers.
const OID_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];
/// tcg-kp-EKCertificate.
const OID_TCG_KP_EK_CERTIFICATE: &[u64] = &[2, 23, 133, 8, 1];

/// An authorityInfoAccess extension with one caIssuers URL (rcgen has no builder for it;
/// yasna is the DER writer rcgen itself uses).
pub fn aia_extension(ca_issuers_url: &str) -> CustomExtension {
    let content = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(OID_CA_ISSUERS));
                // GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String.
                w.next().write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(ca_issuers_url));
            });
        });
    });
    CustomExtension::from_oid_content(OID_AIA, content)
}

/// A DER EK certificate for the EK whose SubjectPublicKeyInfo is `ek_spki_der`, issued by the
/// CA `issuer_cert_pem` / `issuer_key_pem` (PKCS#8), valid from a day ago for ten years, with
/// the tcg-kp-EKCertificate usage and, when given, a caIssuers URL.
pub fn ek_certificate(
    ek_spki_der: &[u8],
    issuer_cert_pem: &str,
    issuer_key_pem: &str,
    ca_issuers_url: Option<&str>,
) -> Result<Vec<u8>, SoftKeyError> {
    let spki = SubjectPublicKeyInfo::from_der(ek_spki_der)?;
    let key = KeyPair::from_pem(issuer_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(issuer_cert_pem, key)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Test TPM EK");
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(OID_TCG_KP_EK_CERTIFICATE.to_vec())];
    if let Some(url) = ca_issuers_url {
        params.custom_extensions.push(aia_extension(url));
    }
    Ok(params.signed_by(&spki, &issuer)?.der().to_vec())
}
