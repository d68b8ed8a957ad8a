//! TPM2_MakeCredential in software (TPM 2.0 Library Part 1 §24 and Part 3 §12.6): encrypt a
//! secret so that only the TPM holding the EK can recover it, and only for the key named
//! `ak_name` loaded in that TPM (TPM2_ActivateCredential). The output is what
//! `tpm2_makecredential -o` writes, so `tpm2_activatecredential` consumes it.

use cfb_mode::cipher::KeyIvInit;
use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;

use super::public::{PublicKey, TpmPublic, attr};
use super::wire::{Reader, WireError, put_sized};
use super::{HashAlg, TPM_ALG_AES, TPM_ALG_CFB, TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};

/// The header tpm2-tools writes in front of a credential blob.
const TPM2_TOOLS_MAGIC: u32 = 0xBADC_C0DE;
const TPM2_TOOLS_VERSION: u32 = 1;

/// Why a credential cannot be made for this EK and AK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "the EK is not a restricted decryption key (restricted and decrypt set, sign clear); send the EK public area, not another key"
    )]
    NotAnEk,
    #[error("the EK's symmetric algorithm must be AES-128/192/256 in CFB mode; this EK does not use it")]
    UnsupportedSymmetric,
    #[error("the AK name must be the name algorithm (2 bytes) followed by a digest of that algorithm's size")]
    BadName,
    #[error("the secret must be 1 to {max} bytes (the digest size of the EK's name algorithm); it is {len}")]
    SecretSize { len: usize, max: usize },
    #[error("the EK public key cannot be used for encryption: {0}")]
    BadEkKey(String),
    #[error(transparent)]
    Randomness(#[from] super::RandomnessError),
    #[error("the credential blob cannot be encoded: {0}")]
    Encoding(#[from] WireError),
}

/// The two halves TPM2_ActivateCredential takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT contents: TPM2B integrity HMAC ‖ encrypted identity.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents: the seed, RSA-OAEP encrypted or as an ephemeral ECC point.
    pub encrypted_secret: Vec<u8>,
}

impl Credential {
    /// The `tpm2_makecredential -o` file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
    /// TPM2B_ENCRYPTED_SECRET (all big-endian).
    pub fn to_tpm2_tools(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(12 + self.id_object.len() + self.encrypted_secret.len());
        out.extend_from_slice(&TPM2_TOOLS_MAGIC.to_be_bytes());
        out.extend_from_slice(&TPM2_TOOLS_VERSION.to_be_bytes());
        put_sized(&mut out, &self.id_object, "TPM2B_ID_OBJECT")?;
        put_sized(&mut out, &self.encrypted_secret, "TPM2B_ENCRYPTED_SECRET")?;
        Ok(out)
    }

    /// Reads a `tpm2_makecredential -o` file.
    pub fn from_tpm2_tools(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "tpm2-tools credential file");
        if r.u32()? != TPM2_TOOLS_MAGIC || r.u32()? != TPM2_TOOLS_VERSION {
            return Err(r.invalid("it does not start with magic 0xBADCC0DE and version 1"));
        }
        let id_object = r.sized()?.to_vec();
        let encrypted_secret = r.sized()?.to_vec();
        r.finish()?;
        Ok(Self { id_object, encrypted_secret })
    }
}

/// Makes a credential: `secret` for the AK named `ak_name`, openable only by the TPM that
/// holds `ek`. Uses the EK's name algorithm and symmetric key size (RSA-2048 EK:
/// SHA-256/AES-128; P-384 EK: SHA-384/AES-256).
pub fn make_credential<R: TryCryptoRng + ?Sized>(
    ek: &TpmPublic,
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut R,
) -> Result<Credential, CredentialError> {
    if !ek.has(attr::RESTRICTED | attr::DECRYPT) || ek.has(attr::SIGN) {
        return Err(CredentialError::NotAnEk);
    }
    let sym_bytes = match ek.symmetric {
        Some(s) if s.algorithm == TPM_ALG_AES && s.mode == TPM_ALG_CFB && matches!(s.key_bits, 128 | 192 | 256) => {
            usize::from(s.key_bits / 8)
        }
        _ => return Err(CredentialError::UnsupportedSymmetric),
    };
    check_name(ak_name)?;
    let hash = ek.name_alg;
    if secret.is_empty() || secret.len() > hash.digest_len() {
        return Err(CredentialError::SecretSize { len: secret.len(), max: hash.digest_len() });
    }
    let (seed, encrypted_secret) = match &ek.key {
        PublicKey::Rsa { modulus, exponent } => rsa_seed(hash, modulus, *exponent, rng)?,
        PublicKey::Ecc { curve, x, y } => ecc_seed(hash, *curve, x, y, rng)?,
    };
    let sym_key = kdfa(hash, &seed, b"STORAGE", ak_name, &[], sym_bytes);
    let mut enc_identity = Vec::with_capacity(secret.len() + 2);
    put_sized(&mut enc_identity, secret, "credential")?;
    cfb_encrypt(&sym_key, &mut enc_identity)?;
    let hmac_key = kdfa(hash, &seed, b"INTEGRITY", &[], &[], hash.digest_len());
    let key = ring::hmac::Key::new(hash.hmac(), &hmac_key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let integrity = ctx.sign();
    let mut id_object = Vec::with_capacity(2 + integrity.as_ref().len() + enc_identity.len());
    put_sized(&mut id_object, integrity.as_ref(), "integrity HMAC")?;
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential { id_object, encrypted_secret })
}

/// Compares the secret the device returned from TPM2_ActivateCredential with the one sent,
/// in constant time.
pub fn secret_matches(expected: &[u8], returned: &[u8]) -> bool {
    expected.len() == returned.len() && bool::from(expected.ct_eq(returned))
}

fn check_name(name: &[u8]) -> Result<(), CredentialError> {
    let (alg, digest) = name.split_at_checked(2).ok_or(CredentialError::BadName)?;
    let alg = <[u8; 2]>::try_from(alg).map(u16::from_be_bytes).map_err(|_| CredentialError::BadName)?;
    match HashAlg::from_id(alg) {
        Some(h) if h.digest_len() == digest.len() => Ok(()),
        _ => Err(CredentialError::BadName),
    }
}

/// RSA EK: a random seed of the name algorithm's digest size, RSA-OAEP encrypted with the
/// name algorithm and the label "IDENTITY\0".
fn rsa_seed<R: TryCryptoRng + ?Sized>(
    hash: HashAlg,
    modulus: &[u8],
    exponent: u32,
    rng: &mut R,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let mut seed = vec![0u8; hash.digest_len()];
    rng.try_fill_bytes(&mut seed).map_err(|_| super::RandomnessError)?;
    let bad = |e: rsa::Error| CredentialError::BadEkKey(e.to_string());
    let bits = u32::try_from(modulus.len() * 8)
        .map_err(|_| CredentialError::BadEkKey("the modulus is too long".to_owned()))?;
    let n = rsa::BoxedUint::from_be_slice(modulus, bits).map_err(|e| CredentialError::BadEkKey(format!("{e:?}")))?;
    let e = rsa::BoxedUint::from(u64::from(exponent));
    let key = rsa::PublicKey::new(n, e).map_err(bad)?;
    let label = b"IDENTITY\0".to_vec();
    let encrypted = match hash {
        HashAlg::Sha1 => key.encrypt(rng, rsa::Oaep::<sha1::Sha1>::new_with_label(label), &seed),
        HashAlg::Sha256 => key.encrypt(rng, rsa::Oaep::<sha2::Sha256>::new_with_label(label), &seed),
        HashAlg::Sha384 => key.encrypt(rng, rsa::Oaep::<sha2::Sha384>::new_with_label(label), &seed),
        HashAlg::Sha512 => key.encrypt(rng, rsa::Oaep::<sha2::Sha512>::new_with_label(label), &seed),
    }
    .map_err(bad)?;
    Ok((seed, encrypted))
}

/// ECDH with a fresh ephemeral key: (shared x coordinate, uncompressed ephemeral point).
macro_rules! ecdh {
    ($curve:ident, $len:expr, $ek_point:expr, $rng:expr) => {{
        let ek = $curve::PublicKey::from_sec1_bytes($ek_point)
            .map_err(|_| CredentialError::BadEkKey("the EK point is not on its curve".to_owned()))?;
        let mut secret = None;
        for _ in 0..16 {
            let mut bytes = [0u8; $len];
            $rng.try_fill_bytes(&mut bytes).map_err(|_| super::RandomnessError)?;
            if let Ok(key) = $curve::SecretKey::from_slice(&bytes) {
                secret = Some(key);
                break;
            }
        }
        let secret = secret.ok_or(CredentialError::Randomness(super::RandomnessError))?;
        let shared = secret.diffie_hellman(&ek);
        (shared.raw_secret_bytes().to_vec(), secret.public_key().to_sec1_bytes().to_vec())
    }};
}

/// ECC EK: an ephemeral key on the EK's curve; seed = KDFe(Z.x, "IDENTITY", ephemeral.x,
/// EK.x); the encrypted secret is the ephemeral public point as a TPMS_ECC_POINT.
fn ecc_seed<R: TryCryptoRng + ?Sized>(
    hash: HashAlg,
    curve: u16,
    x: &[u8],
    y: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let ek_point = [&[4u8][..], x, y].concat();
    let (z, eph) = match curve {
        TPM_ECC_NIST_P256 => ecdh!(p256, 32, &ek_point, rng),
        TPM_ECC_NIST_P384 => ecdh!(p384, 48, &ek_point, rng),
        other => return Err(CredentialError::BadEkKey(format!("TPM curve 0x{other:04x} is not supported"))),
    };
    let (eph_x, eph_y) = eph.get(1..).map(|xy| xy.split_at(xy.len() / 2)).unwrap_or_default();
    let seed = kdfe(hash, &z, b"IDENTITY", eph_x, x, hash.digest_len());
    let mut point = Vec::with_capacity(eph.len() + 3);
    put_sized(&mut point, eph_x, "ephemeral x")?;
    put_sized(&mut point, eph_y, "ephemeral y")?;
    Ok((seed, point))
}

/// KDFa (Part 1 §11.4.10.2): SP 800-108 counter-mode KDF with HMAC-`hash`:
/// HMAC(key, [i]₃₂ ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ [bits]₃₂), truncated to `len` bytes.
pub fn kdfa(hash: HashAlg, key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], len: usize) -> Vec<u8> {
    let key = ring::hmac::Key::new(hash.hmac(), key);
    let bits = u32::try_from(len * 8).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(len + hash.digest_len());
    let mut counter = 1u32;
    while out.len() < len {
        let mut ctx = ring::hmac::Context::with_key(&key);
        for part in [&counter.to_be_bytes()[..], label, &[0], context_u, context_v, &bits] {
            ctx.update(part);
        }
        out.extend_from_slice(ctx.sign().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF with `hash`:
/// H([i]₃₂ ‖ Z ‖ label ‖ 0x00 ‖ partyUInfo ‖ partyVInfo), truncated to `len` bytes.
pub fn kdfe(hash: HashAlg, z: &[u8], label: &[u8], party_u: &[u8], party_v: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.digest_len());
    let mut counter = 1u32;
    while out.len() < len {
        out.extend(hash.digest(&[&counter.to_be_bytes(), z, label, &[0], party_u, party_v]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

fn cfb_encrypt(key: &[u8], buf: &mut [u8]) -> Result<(), CredentialError> {
    let iv = [0u8; 16];
    let bad = |_| CredentialError::UnsupportedSymmetric;
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv).map_err(bad)?.encrypt(buf),
        24 => cfb_mode::Encryptor::<aes::Aes192>::new_from_slices(key, &iv).map_err(bad)?.encrypt(buf),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv).map_err(bad)?.encrypt(buf),
        _ => return Err(CredentialError::UnsupportedSymmetric),
    }
    Ok(())
}
