//! TPMS_ATTEST: what a TPM signs in TPM2_Quote (type quote) and TPM2_Certify (type certify),
//! with its clock, reset/restart counters and firmware version.

use super::HashAlg;
use super::wire::{Reader, WireError};

/// TPM_GENERATED_VALUE: the TPM refuses to sign data starting with it through TPM2_Sign.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// The most PCR banks a selection may list (TPM2_NUM_PCR_BANKS in the TSS).
pub const MAX_PCR_BANKS: usize = 16;
/// The most bytes of a PCR bitmap (TPM2_PCR_SELECT_MAX: 32 PCRs).
pub const MAX_PCR_SELECT: usize = 4;

/// TPMS_CLOCK_INFO. For keys outside the endorsement hierarchy the TPM obfuscates
/// `reset_count` and `restart_count` (consistently per key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was manufactured (or cleared).
    pub clock: u64,
    /// TPM resets (power cycles without orderly shutdown state, or reboots).
    pub reset_count: u32,
    /// TPM restarts/resumes (e.g. hibernation) since the last reset.
    pub restart_count: u32,
    /// `false` when the clock may have been reported higher before (after an unorderly shutdown).
    pub safe: bool,
}

/// One bank of a TPML_PCR_SELECTION: a hash and a bitmap of PCR indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// TPM_ALG_ID of the bank (0x000b = SHA-256).
    pub hash: u16,
    /// Bitmap: bit `i % 8` of byte `i / 8` selects PCR `i`.
    pub select: Vec<u8>,
}

impl PcrSelection {
    /// The selected PCR indices in ascending order (the order the TPM hashes them).
    pub fn pcrs(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (byte_index, byte) in (0u32..).zip(&self.select) {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    out.push(byte_index * 8 + bit);
                }
            }
        }
        out
    }

    pub fn hash_alg(&self) -> Option<HashAlg> {
        HashAlg::from_id(self.hash)
    }
}

/// The type-specific part of a TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestInfo {
    /// TPMS_QUOTE_INFO.
    Quote { selection: Vec<PcrSelection>, pcr_digest: Vec<u8> },
    /// TPMS_CERTIFY_INFO: the certified object's name and qualified name.
    Certify { name: Vec<u8>, qualified_name: Vec<u8> },
    /// Any other attestation type (creation, time, NV, audit), not interpreted.
    Other { attest_type: u16 },
}

/// A decoded TPMS_ATTEST whose magic is TPM_GENERATED_VALUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub attest_type: u16,
    /// The name of the signing key as the TPM qualifies it.
    pub qualified_signer: Vec<u8>,
    /// The caller's nonce (the quote's `-q`, or the WebAuthn attToBeSigned hash).
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub info: AttestInfo,
}

impl Attest {
    /// Decodes a marshalled TPMS_ATTEST (`tpm2_quote -m`, TPM2B_ATTEST contents) that spans
    /// all of `bytes`. Structures without the TPM_GENERATED magic are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        if r.u32()? != TPM_GENERATED_VALUE {
            return Err(WireError::NotTpmGenerated("TPMS_ATTEST"));
        }
        let attest_type = r.u16()?;
        let qualified_signer = r.sized()?.to_vec();
        let extra_data = r.sized()?.to_vec();
        let clock_info =
            ClockInfo { clock: r.u64()?, reset_count: r.u32()?, restart_count: r.u32()?, safe: r.u8()? != 0 };
        let firmware_version = r.u64()?;
        let info = match attest_type {
            TPM_ST_ATTEST_QUOTE => {
                let selection = read_pcr_selection(&mut r)?;
                let pcr_digest = r.sized()?.to_vec();
                AttestInfo::Quote { selection, pcr_digest }
            }
            TPM_ST_ATTEST_CERTIFY => {
                AttestInfo::Certify { name: r.sized()?.to_vec(), qualified_name: r.sized()?.to_vec() }
            }
            0x8014..=0x801f => {
                // The remaining types are not interpreted; their bytes are covered by the signature.
                r.take(r.remaining())?;
                AttestInfo::Other { attest_type }
            }
            other => return Err(r.unsupported("attestation type", other)),
        };
        r.finish()?;
        Ok(Self { attest_type, qualified_signer, extra_data, clock_info, firmware_version, info })
    }

    /// "quote", "certify", or the type number.
    pub fn type_name(&self) -> String {
        match self.attest_type {
            TPM_ST_ATTEST_QUOTE => "quote".to_owned(),
            TPM_ST_ATTEST_CERTIFY => "certify".to_owned(),
            other => format!("0x{other:04x}"),
        }
    }
}

/// TPML_PCR_SELECTION in TPM wire format: a u32 count, then per bank a hash, a u8 size and
/// that many bitmap bytes.
pub(crate) fn read_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, WireError> {
    let count = r.u32()?;
    if count as usize > MAX_PCR_BANKS {
        return Err(r.invalid(format!("it selects {count} PCR banks; at most {MAX_PCR_BANKS} exist")));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let hash = r.u16()?;
        let size = r.u8()?;
        if usize::from(size) > MAX_PCR_SELECT {
            return Err(r.invalid(format!("a PCR bitmap of {size} bytes is larger than {MAX_PCR_SELECT}")));
        }
        out.push(PcrSelection { hash, select: r.take(usize::from(size))?.to_vec() });
    }
    Ok(out)
}
