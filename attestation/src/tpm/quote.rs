//! TPM2_Quote verification: the AK's signature over a TPM-generated TPMS_ATTEST of type
//! quote, the caller's nonce in extraData, and the PCR digest against the PCR values sent;
//! and the comparison of successive clock readings for the `tpm_anomaly` flag.

use super::attest::{Attest, AttestInfo, ClockInfo, PcrSelection};
use super::pcr::PcrValues;
use super::public::{PublicKey, TpmPublic};
use super::signature::{SignatureError, TpmSignature};
use super::wire::WireError;

/// Why a quote is rejected. Every variant is a rejection: nothing here is merely logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("the quote message (TPMS_ATTEST) cannot be used: {0}")]
    Message(WireError),
    #[error("the quote signature (TPMT_SIGNATURE) cannot be used: {0}")]
    SignatureFormat(WireError),
    #[error(
        "the attestation key only signs with scheme 0x{key_scheme:04x}/hash 0x{key_hash:04x}, but the signature is {found}"
    )]
    SchemeMismatch { key_scheme: u16, key_hash: u16, found: String },
    #[error("the quote is not signed by the registered attestation key: {0}")]
    BadSignature(SignatureError),
    #[error("the signed structure is a TPM {0} attestation, not a quote")]
    NotAQuote(String),
    #[error(
        "the quote's nonce (extraData {found}) is not the challenge nonce {expected}; it answers another challenge or is a replay"
    )]
    NonceMismatch { expected: String, found: String },
    #[error("the PCR values sent are not the PCRs the quote selects (banks and indices must match in order)")]
    PcrSelectionMismatch,
    #[error("the PCR values sent do not hash to the quote's PCR digest; at least one value was altered or is stale")]
    PcrDigestMismatch,
}

/// A quote whose signature, type, nonce (and PCR digest, when values were given) verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub selection: Vec<PcrSelection>,
    pub pcr_digest: Vec<u8>,
    /// The AK name as the TPM qualifies it (parent's qualified name chained with the AK name).
    pub qualified_signer: Vec<u8>,
    /// Whether PCR values were given and matched the digest.
    pub pcrs_verified: bool,
}

/// Verifies a quote made by the registered AK (its public area, as registered at credential
/// activation). Besides [`verify_quote_with_key`], the signature scheme must be the AK's own
/// when the AK fixes one.
pub fn verify_quote(
    ak: &TpmPublic,
    message: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: Option<&PcrValues>,
) -> Result<VerifiedQuote, QuoteError> {
    let sig = TpmSignature::parse(signature).map_err(QuoteError::SignatureFormat)?;
    check_scheme(ak, &sig)?;
    verify_parsed(&ak.key, message, &sig, nonce, pcrs)
}

/// Whether `signature` is the registered AK's signature over `message`, in the AK's own scheme
/// when it fixes one, whatever the message says: the proof that whoever sent it holds the AK (or
/// a message it signed). [`verify_quote`] checks the rest.
pub fn verify_signature(ak: &TpmPublic, message: &[u8], signature: &[u8]) -> Result<(), QuoteError> {
    let sig = TpmSignature::parse(signature).map_err(QuoteError::SignatureFormat)?;
    check_scheme(ak, &sig)?;
    sig.verify(&ak.key, message).map_err(QuoteError::BadSignature)
}

fn check_scheme(ak: &TpmPublic, sig: &TpmSignature) -> Result<(), QuoteError> {
    if let Some(scheme) = ak.scheme {
        let hash_ok = scheme.hash.is_none_or(|h| h == sig.hash().id());
        if scheme.algorithm != sig.scheme() || !hash_ok {
            return Err(QuoteError::SchemeMismatch {
                key_scheme: scheme.algorithm,
                key_hash: scheme.hash.unwrap_or_default(),
                found: format!("{} with {}", sig.scheme_name(), sig.hash()),
            });
        }
    }
    Ok(())
}

/// Verifies a quote under a bare public key (e.g. a PEM AK public key): TPM_GENERATED
/// magic, the signature, type quote, `nonce` = extraData, and the PCR digest over `pcrs`.
pub fn verify_quote_with_key(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: Option<&PcrValues>,
) -> Result<VerifiedQuote, QuoteError> {
    let sig = TpmSignature::parse(signature).map_err(QuoteError::SignatureFormat)?;
    verify_parsed(key, message, &sig, nonce, pcrs)
}

fn verify_parsed(
    key: &PublicKey,
    message: &[u8],
    sig: &TpmSignature,
    nonce: &[u8],
    pcrs: Option<&PcrValues>,
) -> Result<VerifiedQuote, QuoteError> {
    let attest = Attest::parse(message).map_err(QuoteError::Message)?;
    sig.verify(key, message).map_err(QuoteError::BadSignature)?;
    let AttestInfo::Quote { selection, pcr_digest } = attest.info else {
        return Err(QuoteError::NotAQuote(attest.type_name()));
    };
    if attest.extra_data != nonce {
        return Err(QuoteError::NonceMismatch { expected: hex::encode(nonce), found: hex::encode(&attest.extra_data) });
    }
    if let Some(values) = pcrs {
        if !values.covers(&selection) {
            return Err(QuoteError::PcrSelectionMismatch);
        }
        if values.digest(sig.hash()) != pcr_digest {
            return Err(QuoteError::PcrDigestMismatch);
        }
    }
    Ok(VerifiedQuote {
        clock_info: attest.clock_info,
        firmware_version: attest.firmware_version,
        selection,
        pcr_digest,
        qualified_signer: attest.qualified_signer,
        pcrs_verified: pcrs.is_some(),
    })
}

/// Something in a TPM's clock readings that a genuine, continuously used TPM does not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockAnomaly {
    #[error(
        "the TPM reset counter went backwards from {previous} to {current}: the TPM was cleared, replaced, or the quote is old"
    )]
    ResetCountBackwards { previous: u32, current: u32 },
    #[error(
        "the TPM restart counter went backwards from {previous} to {current} without a reset: the quote is old or from another TPM"
    )]
    RestartCountBackwards { previous: u32, current: u32 },
    #[error(
        "the TPM clock went backwards from {previous} ms to {current} ms within one reset cycle: the quote is old or from another TPM"
    )]
    ClockBackwards { previous: u64, current: u64 },
    #[error(
        "the TPM firmware version changed from {previous:#018x} to {current:#018x} (a firmware update, or a different TPM)"
    )]
    FirmwareChanged { previous: u64, current: u64 },
}

/// Compares a quote's clock reading with the previous accepted one from the same AK and
/// returns every anomaly (empty when the TPM behaved normally). A firmware change is
/// reported too; a legitimate update also causes it, so treat it as a review signal.
pub fn compare_clocks(
    previous: &ClockInfo,
    previous_firmware: u64,
    current: &ClockInfo,
    current_firmware: u64,
) -> Vec<ClockAnomaly> {
    let mut out = Vec::new();
    if current.reset_count < previous.reset_count {
        out.push(ClockAnomaly::ResetCountBackwards { previous: previous.reset_count, current: current.reset_count });
    } else if current.reset_count == previous.reset_count {
        if current.restart_count < previous.restart_count {
            out.push(ClockAnomaly::RestartCountBackwards {
                previous: previous.restart_count,
                current: current.restart_count,
            });
        }
        if current.clock < previous.clock {
            out.push(ClockAnomaly::ClockBackwards { previous: previous.clock, current: current.clock });
        }
    }
    if current_firmware != previous_firmware {
        out.push(ClockAnomaly::FirmwareChanged { previous: previous_firmware, current: current_firmware });
    }
    out
}
