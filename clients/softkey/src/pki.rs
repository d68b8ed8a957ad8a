//! A throwaway two-level attestation PKI (root → intermediate) for tests and demos.
//!
//! Give the intermediate to [`crate::AttestationMode::Packed`] and the root to the
//! verifier's trust store: the packed `x5c` then forms a real three-certificate chain.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use time::{Duration, OffsetDateTime};

use crate::SoftKeyError;

/// PEM-encoded root and intermediate CA certificates and their PKCS#8 keys.
#[derive(Clone)]
pub struct TestPki {
    pub root_cert_pem: String,
    pub root_key_pem: String,
    pub intermediate_cert_pem: String,
    pub intermediate_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// A PKI valid from a day ago for ten years.
    pub fn generate(org_name: &str) -> Result<Self, SoftKeyError> {
        let now = OffsetDateTime::now_utc();
        Self::generate_with_validity(org_name, now - Duration::days(1), now + Duration::days(3650))
    }

    /// A PKI whose two certificates are valid exactly from `not_before` to `not_after`
    /// (use a past window to test expired chains).
    pub fn generate_with_validity(
        org_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, SoftKeyError> {
        // The root uses P-384 and the intermediate P-256, so chains exercise both curves
        // and ECDSA with SHA-384 as real vendor roots do.
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let root_params = ca_params(
            org_name,
            &format!("{org_name} Attestation Root CA"),
            BasicConstraints::Unconstrained,
            not_before,
            not_after,
        );
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::from_params(&root_params, &root_key);

        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let intermediate_params = ca_params(
            org_name,
            &format!("{org_name} Attestation CA 1"),
            // It signs attestation leaves only.
            BasicConstraints::Constrained(0),
            not_before,
            not_after,
        );
        let intermediate_cert = intermediate_params.signed_by(&intermediate_key, &root_issuer)?;
        Ok(Self {
            root_cert_pem: root_cert.pem(),
            root_key_pem: root_key.serialize_pem(),
            intermediate_cert_pem: intermediate_cert.pem(),
            intermediate_key_pem: intermediate_key.serialize_pem(),
        })
    }
}

fn ca_params(
    org_name: &str,
    common_name: &str,
    constraints: BasicConstraints,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, org_name);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}
