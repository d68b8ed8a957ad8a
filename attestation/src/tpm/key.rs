//! [`PublicKey`] to and from SubjectPublicKeyInfo (DER and PEM), and the EK pin.

use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey as X509Key, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::public::{PublicKey, curve_len, strip_zeros};
use super::{TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// id-RSAES-OAEP: some older EK certificates label their RSA key with it.
const OID_RSAES_OAEP: &str = "1.2.840.113549.1.1.7";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

const DER_RSA_ALGORITHM: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
const DER_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const DER_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const DER_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Why a public key could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the public key is not a DER SubjectPublicKeyInfo ({0})")]
    Spki(String),
    #[error("the PEM input holds no PUBLIC KEY block")]
    NoPemKey,
    #[error("the public key is a {0} key; only RSA and NIST P-256/P-384 keys are supported")]
    Unsupported(String),
}

impl PublicKey {
    /// Reads a DER SubjectPublicKeyInfo (RSA, P-256 or P-384).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = match SubjectPublicKeyInfo::from_der(der) {
            Ok(([], spki)) => spki,
            Ok((rest, _)) => return Err(KeyError::Spki(format!("{} bytes follow it", rest.len()))),
            Err(e) => return Err(KeyError::Spki(e.to_string())),
        };
        Self::from_spki(&spki)
    }

    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let oid = spki.algorithm.algorithm.to_id_string();
        let key_bytes = spki.subject_public_key.data.as_ref();
        match oid.as_str() {
            OID_RSA_ENCRYPTION | OID_RSAES_OAEP => {
                let (_, key) = RSAPublicKey::from_der(key_bytes).map_err(|e| KeyError::Spki(e.to_string()))?;
                rsa_from_parts(key.modulus, key.exponent)
            }
            OID_EC_PUBLIC_KEY => {
                let curve_oid =
                    spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
                let curve = match curve_oid.as_deref() {
                    Some(OID_P256) => TPM_ECC_NIST_P256,
                    Some(OID_P384) => TPM_ECC_NIST_P384,
                    other => return Err(KeyError::Unsupported(format!("EC ({})", other.unwrap_or("no curve")))),
                };
                let X509Key::EC(point) = spki.parsed().map_err(|e| KeyError::Spki(e.to_string()))? else {
                    return Err(KeyError::Spki("the EC key does not decode".to_owned()));
                };
                Self::from_uncompressed(curve, point.data())
            }
            other => Err(KeyError::Unsupported(other.to_owned())),
        }
    }

    /// Reads the first `PUBLIC KEY` block of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| KeyError::Spki(format!("malformed PEM: {e}")))?;
            if block.label == "PUBLIC KEY" {
                return Self::from_spki_der(&block.contents);
            }
        }
        Err(KeyError::NoPemKey)
    }

    /// An uncompressed SEC1 point (0x04 ‖ x ‖ y) on `curve`.
    pub fn from_uncompressed(curve: u16, point: &[u8]) -> Result<Self, KeyError> {
        let len = curve_len(curve).ok_or_else(|| KeyError::Unsupported(format!("TPM curve 0x{curve:04x}")))?;
        match point.split_first() {
            Some((4, xy)) if xy.len() == 2 * len => {
                let (x, y) = xy.split_at(len);
                Ok(Self::Ecc { curve, x: x.to_vec(), y: y.to_vec() })
            }
            _ => Err(KeyError::Spki("the EC point is not an uncompressed point on its curve".to_owned())),
        }
    }

    /// 0x04 ‖ x ‖ y for ECC keys.
    pub(crate) fn uncompressed(&self) -> Option<Vec<u8>> {
        match self {
            Self::Ecc { x, y, .. } => Some([&[4u8][..], x, y].concat()),
            Self::Rsa { .. } => None,
        }
    }

    /// The key as a DER SubjectPublicKeyInfo (what `openssl pkey -pubin -outform der` prints).
    pub fn to_spki_der(&self) -> Vec<u8> {
        match self {
            Self::Rsa { modulus, exponent } => {
                let mut rsa_key = der_integer(modulus);
                rsa_key.extend(der_integer(&exponent.to_be_bytes()));
                let rsa_key = der(0x30, &rsa_key);
                let spki = [DER_RSA_ALGORITHM, &der_bit_string(&rsa_key)].concat();
                der(0x30, &spki)
            }
            Self::Ecc { curve, .. } => {
                let curve_oid = if *curve == TPM_ECC_NIST_P384 { DER_P384 } else { DER_P256 };
                let algorithm = der(0x30, &[DER_EC_PUBLIC_KEY, curve_oid].concat());
                let point = self.uncompressed().unwrap_or_default();
                der(0x30, &[algorithm, der_bit_string(&point)].concat())
            }
        }
    }

    /// A PEM `PUBLIC KEY` block.
    pub fn to_pem(&self) -> String {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.to_spki_der());
        let lines = b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    /// "RSA-2048", "P-256", "P-384".
    pub fn describe(&self) -> String {
        match self {
            Self::Rsa { modulus, .. } => format!("RSA-{}", modulus.len() * 8),
            Self::Ecc { curve: TPM_ECC_NIST_P384, .. } => "P-384".to_owned(),
            Self::Ecc { .. } => "P-256".to_owned(),
        }
    }
}

/// The EK pin recorded in the inventory: SHA-256 of the EK's DER SubjectPublicKeyInfo, the
/// same whether computed from the EK certificate or from the EK public area
/// (`tpm2_readpublic -f der -o ek.der; sha256sum ek.der`).
pub fn ek_pin(ek: &PublicKey) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, &ek.to_spki_der());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn rsa_from_parts(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey, KeyError> {
    let modulus = strip_zeros(modulus);
    let exponent = strip_zeros(exponent);
    if modulus.is_empty() || exponent.len() > 4 {
        return Err(KeyError::Unsupported("RSA key with an empty modulus or an exponent over 32 bits".to_owned()));
    }
    let exponent = exponent.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Ok(PublicKey::Rsa { modulus: modulus.to_vec(), exponent })
}

pub(crate) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = strip_zeros(&bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn der_integer(unsigned: &[u8]) -> Vec<u8> {
    let value = strip_zeros(unsigned);
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    der(0x02, &content)
}

fn der_bit_string(bytes: &[u8]) -> Vec<u8> {
    der(0x03, &[&[0u8][..], bytes].concat())
}
