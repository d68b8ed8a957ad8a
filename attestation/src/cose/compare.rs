//! Comparing a credential key with keys from certificates and TPM structures.

use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{CRV_P256, CRV_P384, CredentialPublicKey, Curve, Material, strip_leading_zeros};

impl CredentialPublicKey {
    /// True when `spki` (from an X.509 certificate) holds exactly this public key.
    pub fn matches_spki(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        match &self.material {
            Material::Ec2 { curve, x, y } => {
                let curve_matches = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .is_some_and(|oid| oid.to_id_string() == curve.oid());
                let point = [&[0x04][..], x, y].concat();
                algorithm == "1.2.840.10045.2.1"
                    && curve_matches
                    && spki.subject_public_key.data.as_ref() == point.as_slice()
            }
            Material::Rsa { n, e } => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => {
                    algorithm == "1.2.840.113549.1.1.1"
                        && strip_leading_zeros(rsa.modulus) == n.as_slice()
                        && strip_leading_zeros(rsa.exponent) == e.as_slice()
                }
                _ => false,
            },
            Material::Ed25519 { x } => {
                algorithm == "1.3.101.112" && spki.subject_public_key.data.as_ref() == x.as_slice()
            }
        }
    }

    /// Like [`Self::matches_spki`], for a DER-encoded SubjectPublicKeyInfo. Unparsable
    /// input never matches.
    pub fn matches_spki_der(&self, spki_der: &[u8]) -> bool {
        match SubjectPublicKeyInfo::from_der(spki_der) {
            Ok((rest, spki)) => rest.is_empty() && self.matches_spki(&spki),
            Err(_) => false,
        }
    }

    /// True for an RSA key with this modulus and exponent (big-endian, leading zeros ignored).
    pub(crate) fn rsa_components_match(&self, modulus: &[u8], exponent: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => {
                n.as_slice() == strip_leading_zeros(modulus) && e.as_slice() == strip_leading_zeros(exponent)
            }
            _ => false,
        }
    }

    /// True for an EC2 key on COSE curve `crv` with these coordinates (leading zeros ignored,
    /// as TPMs may shorten them).
    pub(crate) fn ec2_components_match(&self, crv: i64, px: &[u8], py: &[u8]) -> bool {
        match &self.material {
            Material::Ec2 { curve, x, y } => {
                let this_crv = match curve {
                    Curve::P256 => CRV_P256,
                    Curve::P384 => CRV_P384,
                };
                this_crv == crv
                    && strip_leading_zeros(x) == strip_leading_zeros(px)
                    && strip_leading_zeros(y) == strip_leading_zeros(py)
            }
            _ => false,
        }
    }

    /// The uncompressed SEC1 point (0x04 ‖ x ‖ y) of a P-256 key, as FIDO U2F uses it.
    pub(crate) fn p256_uncompressed_point(&self) -> Option<Vec<u8>> {
        match &self.material {
            Material::Ec2 { curve: Curve::P256, x, y } => Some([&[0x04][..], x, y].concat()),
            _ => None,
        }
    }
}
