//! The EK certificate chain a TPM carries in NV (TCG EK Credential Profile: indices
//! 0x01C00100–0x01C001FF, each one or more concatenated DER certificates; Intel PTT keeps its
//! on-die CA chain there). Read once at enrollment and sent as intermediates.
//!
//! Every index is read in chunks of the TPM's max NV buffer size (tss-esapi's reader asks the
//! TPM for TPM_PT_NV_BUFFER_MAX). An index that cannot be read or split is skipped with a
//! warning: the chain is a help for tetherd, never a reason to fail enrollment.

use std::io::Read;

use tss_esapi::Context;
use tss_esapi::abstraction::nv::NvOpenOptions;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::structures::CapabilityData;

use crate::ek_chain::{self, Candidate, MAX_NV_CERTIFICATES, MAX_NV_INDEX_BYTES};

/// The EK certificate chain range of the TCG EK Credential Profile.
pub const NV_CHAIN_FIRST: u32 = 0x01c0_0100;
pub const NV_CHAIN_LAST: u32 = 0x01c0_01ff;

/// The defined NV indices in the chain range, in order.
fn chain_indices(ctx: &mut Context) -> Vec<NvIndexTpmHandle> {
    let mut found = Vec::new();
    let mut next = NV_CHAIN_FIRST;
    // Each round returns at least one handle or ends the loop, so the range bounds the rounds.
    for _ in 0..=(NV_CHAIN_LAST - NV_CHAIN_FIRST) {
        let count = NV_CHAIN_LAST - next + 1;
        let (data, more) =
            match ctx.execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, next, count)) {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!("EK chain: cannot list the NV indices (TPM2_GetCapability): {e}");
                    return found;
                }
            };
        let CapabilityData::Handles(handles) = data else { return found };
        let mut last = None;
        for handle in handles.iter() {
            if let TpmHandle::NvIndex(index) = *handle {
                let value = u32::from(index);
                if (NV_CHAIN_FIRST..=NV_CHAIN_LAST).contains(&value) {
                    found.push(index);
                }
                last = Some(value);
            }
        }
        match last {
            Some(value) if more && value < NV_CHAIN_LAST => next = value + 1,
            _ => break,
        }
    }
    found
}

/// Reads one index through its own authorization (authRead with the empty auth, as the EK
/// certificate index is read), then as the owner; refuses indices over the size bound unread.
fn read_index(ctx: &mut Context, index: NvIndexTpmHandle) -> Result<Vec<u8>, String> {
    let nv_auth = ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(index)))
        .map(|handle| NvAuth::NvIndex(handle.into()))
        .map_err(|e| format!("cannot open it: {e}"))?;
    let mut last_error = String::new();
    for auth in [nv_auth, NvAuth::Owner] {
        let read: Result<Result<Vec<u8>, String>, tss_esapi::Error> = ctx.execute_with_nullauth_session(|ctx| {
            let mut reader = NvOpenOptions::ExistingIndex { nv_index_handle: index, auth_handle: auth }.open(ctx)?;
            if reader.size() > MAX_NV_INDEX_BYTES {
                return Ok(Err(format!("it holds {} bytes, more than the {MAX_NV_INDEX_BYTES} read", reader.size())));
            }
            let mut out = Vec::with_capacity(reader.size());
            match reader.read_to_end(&mut out) {
                Ok(_) => Ok(Ok(out)),
                Err(e) => Ok(Err(format!("TPM2_NV_Read failed: {e}"))),
            }
        });
        match read {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(why)) => return Err(why),
            Err(e) => last_error = format!("cannot read it: {e}"),
        }
    }
    Err(last_error)
}

/// The certificates of every readable chain index, bounded by [`MAX_NV_CERTIFICATES`]; what
/// is skipped, and why, goes to the log.
pub fn read_chain(ctx: &mut Context) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for index in chain_indices(ctx) {
        let name = format!("NV 0x{:08x}", u32::from(index));
        let room = MAX_NV_CERTIFICATES.saturating_sub(out.len());
        if room == 0 {
            tracing::warn!("EK chain: {name} skipped, at most {MAX_NV_CERTIFICATES} certificates are read from NV");
            continue;
        }
        let bytes = match read_index(ctx, index) {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::warn!("EK chain: {name} skipped: {why}");
                continue;
            }
        };
        match ek_chain::split_der_certificates(&bytes, room) {
            Ok((certs, notes)) => {
                for note in notes {
                    tracing::warn!("EK chain: {name}: {note}");
                }
                tracing::debug!("EK chain: {name} holds {} certificate(s)", certs.len());
                out.extend(certs.into_iter().map(|der| Candidate { der, source: name.clone() }));
            }
            Err(why) => tracing::warn!("EK chain: {name} skipped, it is not a list of DER certificates: {why}"),
        }
    }
    out
}
