//! TPM 2.0 attestation, verified offline in pure Rust: the wire structures a TPM and
//! tpm2-tools produce, EK certificates, attestation-key (AK) checks, MakeCredential for
//! credential activation, and quote verification with clock/reset anomaly detection.
//!
//! Like the rest of the crate this module performs no I/O and reads no clock; randomness for
//! MakeCredential comes from the caller (see [`SystemRng`]).
//!
//! The service-side flow (the Keylime / go-attestation protocol):
//! 1. [`ek::verify_ek_certificate`] on the device's EK certificate, then
//!    [`ek::ek_matches_certificate`] against the EK public area the device sent, and
//!    [`ek_pin`] / [`ek::check_ek_pin`] to compare with the inventory's pinned EK.
//! 2. [`TpmPublic::parse`] the AK public area and [`ak::check_ak_attributes`].
//! 3. [`credential::make_credential`] for the EK and the AK's [`TpmPublic::name`]; bind the
//!    AK only when the device returns the same secret ([`credential::secret_matches`]).
//! 4. For each presence challenge, [`quote::verify_quote`] with the bound AK and the nonce,
//!    then [`quote::compare_clocks`] with the previous quote's clock for `tpm_anomaly`.

pub mod ak;
pub mod attest;
pub mod bundle;
pub mod credential;
pub mod ek;
mod key;
pub mod pcr;
pub mod public;
pub mod quote;
mod rng;
pub mod signature;
mod wire;

pub use attest::{Attest, AttestInfo, ClockInfo, PcrSelection};
pub use key::{KeyError, ek_pin};
pub use public::{KeyParams, PublicKey, TpmPublic};
/// The `rand_core` version [`credential::make_credential`] takes its RNG from.
pub use rand_core;
pub use rng::{RandomnessError, SystemRng};
pub use signature::TpmSignature;
pub use wire::WireError;

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_AES: u16 = 0x0006;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAES: u16 = 0x0015;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECDAA: u16 = 0x001A;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ALG_CFB: u16 = 0x0043;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
pub const TPM_ECC_NIST_P384: u16 = 0x0004;

/// A TPM hash algorithm this crate can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            TPM_ALG_SHA1 => Self::Sha1,
            TPM_ALG_SHA256 => Self::Sha256,
            TPM_ALG_SHA384 => Self::Sha384,
            TPM_ALG_SHA512 => Self::Sha512,
            _ => return None,
        })
    }

    pub fn id(self) -> u16 {
        match self {
            Self::Sha1 => TPM_ALG_SHA1,
            Self::Sha256 => TPM_ALG_SHA256,
            Self::Sha384 => TPM_ALG_SHA384,
            Self::Sha512 => TPM_ALG_SHA512,
        }
    }

    /// The name tpm2-tools uses, e.g. "sha256".
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    pub fn digest_len(self) -> usize {
        self.ring().output_len()
    }

    pub(crate) fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    pub(crate) fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            Self::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => ring::hmac::HMAC_SHA256,
            Self::Sha384 => ring::hmac::HMAC_SHA384,
            Self::Sha512 => ring::hmac::HMAC_SHA512,
        }
    }

    /// The digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(self.ring());
        for part in parts {
            ctx.update(part);
        }
        ctx.finish().as_ref().to_vec()
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
