//! Credential public keys in COSE_Key form (RFC 9052/9053), as found in authenticator data.
//!
//! Supported: EC2 P-256 (ES256) and P-384 (ES384), RSA (RS256/384/512, PS256/384/512)
//! and OKP Ed25519 (EdDSA). Keys are normalised on parse so that equal keys compare equal
//! and [`CredentialPublicKey::to_cose`] always produces the same canonical bytes.

mod compare;
mod encode;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::cbor::{self, CborError, Map};

/// COSE algorithm identifiers (IANA "COSE Algorithms" registry).
pub mod alg {
    pub const ES256: i64 = -7;
    pub const EDDSA: i64 = -8;
    pub const ES384: i64 = -35;
    pub const PS256: i64 = -37;
    pub const PS384: i64 = -38;
    pub const PS512: i64 = -39;
    pub const RS256: i64 = -257;
    pub const RS384: i64 = -258;
    pub const RS512: i64 = -259;
    /// RSASSA-PKCS1-v1_5 with SHA-1: only ever accepted for TPM attestation statements.
    pub const RS1: i64 = -65535;
}

const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const KTY_RSA: i64 = 3;
const CRV_P256: i64 = 1;
const CRV_P384: i64 = 2;
const CRV_ED25519: i64 = 6;
/// A COSE_Key is small; the largest (RSA-8192) is about 1.1 KiB.
const MAX_COSE_KEY_BYTES: usize = 4096;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Why a COSE key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    #[error("the credential public key is not valid CBOR: {0}")]
    Cbor(#[from] CborError),
    #[error("the credential public key lacks the required COSE parameter {0}")]
    MissingParameter(&'static str),
    #[error("the COSE parameter {0} has the wrong type or size")]
    InvalidParameter(&'static str),
    #[error("COSE key type {0} is not supported; use EC2 (2), RSA (3) or OKP (1)")]
    UnsupportedKeyType(i64),
    #[error("COSE algorithm {0} is not supported; use ES256, ES384, EdDSA, RS256/384/512 or PS256/384/512")]
    UnsupportedAlgorithm(i64),
    #[error("COSE algorithm {alg} cannot be used with a {key} key")]
    AlgorithmKeyMismatch { alg: i64, key: &'static str },
    #[error("the RSA key is {0} bits; only 2048 to 8192 bits are accepted")]
    RsaKeySize(usize),
    #[error("the credential public key contains private key material and must not be used")]
    PrivateKeyMaterial,
    #[error("the Ed25519 public key is a point of small order, for which one signature verifies every message")]
    WeakEd25519Key,
    #[error("the signature does not verify with the credential public key")]
    BadSignature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn oid(self) -> &'static str {
        match self {
            Curve::P256 => "1.2.840.10045.3.1.7",
            Curve::P384 => "1.3.132.0.34",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Ec2 {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// Modulus and exponent, big-endian with leading zero bytes removed.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

/// A verified-shape credential public key and the algorithm it signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPublicKey {
    alg: i64,
    material: Material,
}

impl CredentialPublicKey {
    /// Parses a COSE_Key that must span all of `bytes`.
    pub fn from_cose(bytes: &[u8]) -> Result<Self, CoseError> {
        let value = cbor::decode_exact(bytes, MAX_COSE_KEY_BYTES)?;
        Self::from_value(&value)
    }

    /// Parses the COSE_Key at the front of `bytes` (inside authenticator data) and returns
    /// what follows it.
    pub(crate) fn from_cose_prefix(bytes: &[u8]) -> Result<(Self, &[u8]), CoseError> {
        let window = bytes.get(..MAX_COSE_KEY_BYTES).unwrap_or(bytes);
        let (value, rest) = cbor::decode_prefix(window, MAX_COSE_KEY_BYTES)?;
        let consumed = window.len() - rest.len();
        let key = Self::from_value(&value)?;
        Ok((key, bytes.get(consumed..).unwrap_or_default()))
    }

    fn from_value(value: &ciborium::Value) -> Result<Self, CoseError> {
        let map = Map::new(value)?;
        let kty = int_param(&map, 1, "kty (1)")?;
        let alg = int_param(&map, 3, "alg (3)")?;
        let material = match kty {
            KTY_EC2 => parse_ec2(&map, alg)?,
            KTY_RSA => parse_rsa(&map, alg)?,
            KTY_OKP => parse_okp(&map, alg)?,
            other => return Err(CoseError::UnsupportedKeyType(other)),
        };
        Ok(Self { alg, material })
    }

    /// The COSE algorithm this key signs with (e.g. -7 for ES256).
    pub fn algorithm(&self) -> i64 {
        self.alg
    }

    /// A short human-readable description such as "EC2 P-256 (ES256)".
    pub fn description(&self) -> String {
        let (kind, bits) = match &self.material {
            Material::Ec2 { curve: Curve::P256, .. } => ("EC2 P-256", None),
            Material::Ec2 { curve: Curve::P384, .. } => ("EC2 P-384", None),
            Material::Rsa { n, .. } => ("RSA", Some(rsa_bits(n))),
            Material::Ed25519 { .. } => ("OKP Ed25519", None),
        };
        match bits {
            Some(bits) => format!("{kind}-{bits} (alg {})", self.alg),
            None => format!("{kind} (alg {})", self.alg),
        }
    }

    /// Verifies a WebAuthn signature (ECDSA signatures are ASN.1 DER) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CoseError> {
        let ok = match &self.material {
            Material::Ec2 { x, y, .. } => {
                let algorithm = match self.alg {
                    alg::ES256 => &signature::ECDSA_P256_SHA256_ASN1,
                    _ => &signature::ECDSA_P384_SHA384_ASN1,
                };
                let point = [&[0x04][..], x, y].concat();
                UnparsedPublicKey::new(algorithm, point).verify(message, signature).is_ok()
            }
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match self.alg {
                    alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature).is_ok()
            }
            Material::Ed25519 { x } => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature).is_ok()
            }
        };
        if ok { Ok(()) } else { Err(CoseError::BadSignature) }
    }
}

fn int_param(map: &Map<'_>, label: i64, name: &'static str) -> Result<i64, CoseError> {
    let value = map.int(label).ok_or(CoseError::MissingParameter(name))?;
    cbor::int_value(value).ok_or(CoseError::InvalidParameter(name))
}

fn bytes_param<'a>(map: &Map<'a>, label: i64, name: &'static str) -> Result<&'a [u8], CoseError> {
    let value = map.int(label).ok_or(CoseError::MissingParameter(name))?;
    value.as_bytes().map(Vec::as_slice).ok_or(CoseError::InvalidParameter(name))
}

fn parse_ec2(map: &Map<'_>, alg: i64) -> Result<Material, CoseError> {
    if map.int(-4).is_some() {
        return Err(CoseError::PrivateKeyMaterial);
    }
    let curve = match int_param(map, -1, "crv (-1)")? {
        CRV_P256 => Curve::P256,
        CRV_P384 => Curve::P384,
        _ => return Err(CoseError::InvalidParameter("crv (-1)")),
    };
    // ES256 means P-256 and ES384 means P-384 in WebAuthn; other pairings are refused.
    match (alg, curve) {
        (alg::ES256, Curve::P256) | (alg::ES384, Curve::P384) => {}
        (alg::ES256 | alg::ES384, _) => {
            return Err(CoseError::AlgorithmKeyMismatch { alg, key: "EC2 key on another curve" });
        }
        _ => return Err(unsupported_or_mismatch(alg, "EC2")),
    }
    let x = bytes_param(map, -2, "x (-2)")?;
    // A boolean y (point compression) is not used by WebAuthn authenticators.
    let y = bytes_param(map, -3, "y (-3)")?;
    if x.len() != curve.coordinate_len() {
        return Err(CoseError::InvalidParameter("x (-2)"));
    }
    if y.len() != curve.coordinate_len() {
        return Err(CoseError::InvalidParameter("y (-3)"));
    }
    Ok(Material::Ec2 { curve, x: x.to_vec(), y: y.to_vec() })
}

fn parse_rsa(map: &Map<'_>, alg: i64) -> Result<Material, CoseError> {
    // Labels -3 and below carry the private exponent and CRT parameters.
    if map.int_keys().any(|k| k.is_some_and(|k| k <= -3)) {
        return Err(CoseError::PrivateKeyMaterial);
    }
    if !matches!(alg, alg::RS256 | alg::RS384 | alg::RS512 | alg::PS256 | alg::PS384 | alg::PS512) {
        return Err(unsupported_or_mismatch(alg, "RSA"));
    }
    let n = strip_leading_zeros(bytes_param(map, -1, "n (-1)")?);
    let e = strip_leading_zeros(bytes_param(map, -2, "e (-2)")?);
    let bits = rsa_bits(n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(CoseError::RsaKeySize(bits));
    }
    if e.is_empty() || e.len() > 4 {
        return Err(CoseError::InvalidParameter("e (-2)"));
    }
    Ok(Material::Rsa { n: n.to_vec(), e: e.to_vec() })
}

fn parse_okp(map: &Map<'_>, alg: i64) -> Result<Material, CoseError> {
    if map.int(-4).is_some() {
        return Err(CoseError::PrivateKeyMaterial);
    }
    if alg != alg::EDDSA {
        return Err(unsupported_or_mismatch(alg, "OKP"));
    }
    if int_param(map, -1, "crv (-1)")? != CRV_ED25519 {
        return Err(CoseError::InvalidParameter("crv (-1)"));
    }
    let x = bytes_param(map, -2, "x (-2)")?;
    if x.len() != signature::ED25519_PUBLIC_KEY_LEN {
        return Err(CoseError::InvalidParameter("x (-2)"));
    }
    if is_small_order_ed25519(x) {
        return Err(CoseError::WeakEd25519Key);
    }
    Ok(Material::Ed25519 { x: x.to_vec() })
}

/// The encodings (sign bit ignored) of the Ed25519 points of small order, canonical or not,
/// as libsodium refuses them. ring verifies against such a key without complaint, and with
/// it the signature R = identity, S = 0 is valid for every message (found by fuzz/cose_key).
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    [
        [0; 32],
        one,
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
            0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
            0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ],
        p_minus_1,
        p,
        p_plus_1,
    ]
};

fn is_small_order_ed25519(x: &[u8]) -> bool {
    let Some((&last, rest)) = x.split_last() else { return false };
    ED25519_SMALL_ORDER.iter().any(|bad| bad[..31] == *rest && bad[31] == last & 0x7f)
}

fn unsupported_or_mismatch(alg: i64, key: &'static str) -> CoseError {
    let known = matches!(
        alg,
        alg::ES256
            | alg::ES384
            | alg::EDDSA
            | alg::RS256
            | alg::RS384
            | alg::RS512
            | alg::PS256
            | alg::PS384
            | alg::PS512
    );
    if known { CoseError::AlgorithmKeyMismatch { alg, key } } else { CoseError::UnsupportedAlgorithm(alg) }
}

pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}
