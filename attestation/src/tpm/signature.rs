//! TPMT_SIGNATURE (`tpm2_quote -s`, `tpm2_sign -f tss`) and its verification with `ring`.

use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use super::key::{der, der_integer};
use super::public::{PublicKey, curve_len, pad_coordinate, strip_zeros};
use super::wire::{Reader, WireError};
use super::{HashAlg, TPM_ALG_ECDSA, TPM_ALG_RSAPSS, TPM_ALG_RSASSA, TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};

/// A decoded TPMT_SIGNATURE of a supported scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        hash: HashAlg,
        signature: Vec<u8>,
    },
    /// RSASSA-PSS (salt as long as the digest, as current TPMs produce).
    RsaPss {
        hash: HashAlg,
        signature: Vec<u8>,
    },
    Ecdsa {
        hash: HashAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
}

/// Why a signature does not verify under a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a {scheme} signature cannot be made by the {key} key it is checked against")]
    KeyMismatch { scheme: &'static str, key: String },
    #[error(
        "{0} signatures are not accepted; create the attestation key with SHA-256 or stronger (tpm2_createak -g sha256)"
    )]
    WeakHash(HashAlg),
    #[error("{hash} with {curve} ECDSA is not supported; use SHA-256 or SHA-384")]
    UnsupportedEcdsa { hash: HashAlg, curve: String },
    #[error("the signature does not verify under the attestation key: the data was altered or another key signed it")]
    Invalid,
}

impl TpmSignature {
    /// Decodes a TPMT_SIGNATURE spanning all of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let alg = r.u16()?;
        if !matches!(alg, TPM_ALG_RSASSA | TPM_ALG_RSAPSS | TPM_ALG_ECDSA) {
            return Err(r.unsupported("signature scheme (RSASSA, RSAPSS and ECDSA are supported)", alg));
        }
        let hash_id = r.u16()?;
        let hash = HashAlg::from_id(hash_id).ok_or_else(|| r.unsupported("signature hash", hash_id))?;
        let parsed = match alg {
            TPM_ALG_RSASSA => Self::RsaSsa { hash, signature: r.sized()?.to_vec() },
            TPM_ALG_RSAPSS => Self::RsaPss { hash, signature: r.sized()?.to_vec() },
            _ => Self::Ecdsa { hash, r: r.sized()?.to_vec(), s: r.sized()?.to_vec() },
        };
        r.finish()?;
        Ok(parsed)
    }

    pub fn hash(&self) -> HashAlg {
        match self {
            Self::RsaSsa { hash, .. } | Self::RsaPss { hash, .. } | Self::Ecdsa { hash, .. } => *hash,
        }
    }

    /// TPM_ALG_ID of the scheme.
    pub fn scheme(&self) -> u16 {
        match self {
            Self::RsaSsa { .. } => TPM_ALG_RSASSA,
            Self::RsaPss { .. } => TPM_ALG_RSAPSS,
            Self::Ecdsa { .. } => TPM_ALG_ECDSA,
        }
    }

    pub fn scheme_name(&self) -> &'static str {
        match self {
            Self::RsaSsa { .. } => "RSASSA",
            Self::RsaPss { .. } => "RSAPSS",
            Self::Ecdsa { .. } => "ECDSA",
        }
    }

    /// Verifies that `key` signed `message`. SHA-1 is refused.
    pub fn verify(&self, key: &PublicKey, message: &[u8]) -> Result<(), SignatureError> {
        let mismatch = || SignatureError::KeyMismatch { scheme: self.scheme_name(), key: key.describe() };
        if self.hash() == HashAlg::Sha1 {
            return Err(SignatureError::WeakHash(HashAlg::Sha1));
        }
        match (self, key) {
            (
                Self::RsaSsa { hash, signature } | Self::RsaPss { hash, signature },
                PublicKey::Rsa { modulus, exponent },
            ) => {
                let pss = matches!(self, Self::RsaPss { .. });
                let params = match (pss, hash) {
                    (false, HashAlg::Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
                    (false, HashAlg::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
                    (false, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
                    (true, HashAlg::Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
                    (true, HashAlg::Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
                    (true, _) => &sig::RSA_PSS_2048_8192_SHA512,
                };
                // ring refuses integers with leading zero bytes.
                let e = exponent.to_be_bytes();
                RsaPublicKeyComponents { n: modulus.as_slice(), e: strip_zeros(&e) }
                    .verify(params, message, signature)
                    .map_err(|_| SignatureError::Invalid)
            }
            (Self::Ecdsa { hash, r, s }, PublicKey::Ecc { curve, .. }) => {
                let algorithm: &'static dyn VerificationAlgorithm = match (*curve, hash) {
                    (TPM_ECC_NIST_P256, HashAlg::Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
                    (TPM_ECC_NIST_P256, HashAlg::Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
                    (TPM_ECC_NIST_P384, HashAlg::Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
                    (TPM_ECC_NIST_P384, HashAlg::Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
                    _ => return Err(SignatureError::UnsupportedEcdsa { hash: *hash, curve: key.describe() }),
                };
                let len = curve_len(*curve).ok_or_else(mismatch)?;
                let (Some(r), Some(s)) = (pad_coordinate(r, len), pad_coordinate(s, len)) else {
                    return Err(SignatureError::Invalid);
                };
                let point = key.uncompressed().ok_or_else(mismatch)?;
                // ring takes (r, s) as an ASN.1 Ecdsa-Sig-Value for every curve/hash pairing.
                let mut rs = der_integer(&r);
                rs.extend(der_integer(&s));
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, &der(0x30, &rs))
                    .map_err(|_| SignatureError::Invalid)
            }
            _ => Err(mismatch()),
        }
    }
}
