//! TPMT_PUBLIC / TPM2B_PUBLIC: a TPM object's public area (RSA and ECC keys), its name, and
//! conversion of the key to a SubjectPublicKeyInfo for comparison with certificates.

use super::wire::{Reader, WireError, put_sized};
use super::{HashAlg, TPM_ALG_ECC, TPM_ALG_ECDAA, TPM_ALG_NULL, TPM_ALG_RSA, TPM_ALG_RSAES};
use super::{TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};

/// TPMA_OBJECT bits.
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

/// TPMT_SYM_DEF_OBJECT when not TPM_ALG_NULL, e.g. AES-128-CFB in an EK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    pub algorithm: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A signing, encryption or key-derivation scheme: its algorithm and, for most schemes, a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    pub algorithm: u16,
    pub hash: Option<u16>,
}

/// The public key itself, independent of TPM object metadata: what a certificate or a PEM
/// file can also carry, and what signatures are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus (big-endian, no leading zeros) and public exponent.
    Rsa { modulus: Vec<u8>, exponent: u32 },
    /// An uncompressed point; `x` and `y` are left-padded to the curve's field size.
    Ecc { curve: u16, x: Vec<u8>, y: Vec<u8> },
}

/// The algorithm-specific parameters of a public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyParams {
    Rsa { key_bits: u16 },
    Ecc { kdf: Option<Scheme> },
}

/// A decoded TPMT_PUBLIC. `raw` keeps the exact marshalled bytes: the object's name is a
/// digest over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    pub name_alg: HashAlg,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    pub scheme: Option<Scheme>,
    pub params: KeyParams,
    pub key: PublicKey,
    raw: Vec<u8>,
}

/// The field size in bytes of a supported curve.
pub fn curve_len(curve: u16) -> Option<usize> {
    match curve {
        TPM_ECC_NIST_P256 => Some(32),
        TPM_ECC_NIST_P384 => Some(48),
        _ => None,
    }
}

impl TpmPublic {
    /// Decodes a TPM2B_PUBLIC (as `tpm2_createak -u` / `tpm2_readpublic -o` write it) or a
    /// bare TPMT_PUBLIC, whichever `bytes` is.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let sized = bytes
            .get(..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .is_some_and(|b| usize::from(u16::from_be_bytes(b)) + 2 == bytes.len());
        if sized { Self::from_tpm2b(bytes) } else { Self::from_tpmt(bytes) }
    }

    /// Decodes a TPM2B_PUBLIC: a u16 size, then a TPMT_PUBLIC of exactly that size.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPM2B_PUBLIC");
        let inner = r.sized()?;
        r.finish()?;
        Self::from_tpmt(inner)
    }

    /// Decodes a TPMT_PUBLIC that spans all of `bytes`.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPMT_PUBLIC");
        let public = read_tpmt(&mut r)?;
        r.finish()?;
        Ok(Self { raw: bytes.to_vec(), ..public })
    }

    /// The marshalled TPMT_PUBLIC.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The TPM2B_PUBLIC encoding (as `tpm2_readpublic -o` writes it).
    pub fn tpm2b_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.raw.len() + 2);
        put_sized(&mut out, &self.raw, "TPMT_PUBLIC")?;
        Ok(out)
    }

    /// The object's name: nameAlg (u16) ‖ H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend_from_slice(&self.name_alg.digest(&[&self.raw]));
        name
    }

    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }
}

fn read_scheme(r: &mut Reader<'_>) -> Result<Option<Scheme>, WireError> {
    let algorithm = r.u16()?;
    Ok(match algorithm {
        TPM_ALG_NULL => None,
        TPM_ALG_RSAES => Some(Scheme { algorithm, hash: None }),
        TPM_ALG_ECDAA => {
            let hash = r.u16()?;
            let _count = r.u16()?;
            Some(Scheme { algorithm, hash: Some(hash) })
        }
        _ => Some(Scheme { algorithm, hash: Some(r.u16()?) }),
    })
}

fn read_tpmt(r: &mut Reader<'_>) -> Result<TpmPublic, WireError> {
    let key_type = r.u16()?;
    let name_alg_id = r.u16()?;
    let name_alg = HashAlg::from_id(name_alg_id).ok_or_else(|| r.unsupported("nameAlg", name_alg_id))?;
    let attributes = r.u32()?;
    let auth_policy = r.sized()?.to_vec();
    let symmetric = match r.u16()? {
        TPM_ALG_NULL => None,
        algorithm => Some(SymDef { algorithm, key_bits: r.u16()?, mode: r.u16()? }),
    };
    let scheme = read_scheme(r)?;
    let (params, key) = match key_type {
        TPM_ALG_RSA => {
            let key_bits = r.u16()?;
            let exponent = match r.u32()? {
                0 => 65537,
                e => e,
            };
            let modulus = r.sized()?;
            let modulus = strip_zeros(modulus).to_vec();
            if modulus.is_empty() {
                return Err(r.invalid("the RSA modulus is empty"));
            }
            (KeyParams::Rsa { key_bits }, PublicKey::Rsa { modulus, exponent })
        }
        TPM_ALG_ECC => {
            let curve = r.u16()?;
            let kdf = read_scheme(r)?;
            let len = curve_len(curve).ok_or_else(|| r.unsupported("ECC curve", curve))?;
            let x = pad_coordinate(r.sized()?, len).ok_or_else(|| r.invalid("the ECC x coordinate is too long"))?;
            let y = pad_coordinate(r.sized()?, len).ok_or_else(|| r.invalid("the ECC y coordinate is too long"))?;
            (KeyParams::Ecc { kdf }, PublicKey::Ecc { curve, x, y })
        }
        other => return Err(r.unsupported("key type (only RSA and ECC keys are supported)", other)),
    };
    Ok(TpmPublic { name_alg, attributes, auth_policy, symmetric, scheme, params, key, raw: Vec::new() })
}

pub(crate) fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Left-pads a big-endian coordinate to `len` bytes; `None` if it is longer.
pub(crate) fn pad_coordinate(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    let bytes = if bytes.len() > len { strip_zeros(bytes) } else { bytes };
    let pad = len.checked_sub(bytes.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(bytes);
    Some(out)
}
