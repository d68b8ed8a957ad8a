//! The TPM 2.0 backend (cargo feature `tpm`, tss-esapi over the system's tpm2-tss).
//!
//! The device's identity key is an attestation key (AK) created under the endorsement key
//! (EK) — the TCG RSA-2048 EK template, whose certificate the TPM maker stored in NV index
//! 0x01c00002. Enrollment is credential activation: the EK public area, the EK certificate and
//! the AK public area go to BeginTpmEnrollment, TPM2_ActivateCredential recovers the server's
//! secret (possible only on the TPM that holds both keys), FinishTpmEnrollment returns it
//! (`tpm_enroll.rs`). The EK certificate's chain comes from the NV chain indices
//! (`tpm_nv.rs`), the operator and AIA (`ek_chain.rs`, `aia.rs`).
//! Presence challenges are answered with TPM2_Quote over the challenge nonce, with the values of
//! the quoted PCRs (TPM2_PCR_Read) in the `tpm2_quote -o` file format.
//!
//! Every step opens its own TCTI context and flushes the transient objects and sessions it
//! created (a TPM without a resource manager, such as swtpm, has only a few slots). The state
//! file keeps the TCTI string and the AK's public and (TPM-wrapped) private blobs; the AK is
//! reloaded under the EK for each quote.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tether_attestation::tpm::HashAlg;
use tether_attestation::tpm::pcr::{PcrValue, PcrValues};
use tether_proto::v1::TpmQuote;
use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    AttestInfo, Data, EncryptedSecret, IdObject, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private, Public,
    PublicBuffer, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};

use crate::ek_chain::Candidate;
use crate::{AgentError, Authenticator};

#[path = "tpm_enroll.rs"]
mod enroll;
#[path = "tpm_nv.rs"]
mod nv;

pub use enroll::{EkChainOptions, enroll_tpm};

/// The backend name stored in the state file for [`TpmKey`].
pub const TPM_BACKEND: &str = "tpm";

/// The default TCTI: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// The TCTI to use: an explicit one, else `TPM2TOOLS_TCTI` / `TCTI`, else [`DEFAULT_TCTI`].
pub fn tcti_from_env(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var("TPM2TOOLS_TCTI").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("TCTI").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_TCTI.to_string())
}

fn tpm_error(what: &str) -> impl Fn(tss_esapi::Error) -> AgentError + '_ {
    move |e| AgentError::Authenticator(format!("TPM: {what}: {e}"))
}

/// An attestation key in a TPM 2.0, reached through a TCTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmKey {
    tcti: String,
    /// TPM2B_PUBLIC of the AK.
    ak_public: Vec<u8>,
    /// TPM2B_PRIVATE contents of the AK (wrapped by the EK: useless outside this TPM).
    ak_private: Vec<u8>,
    /// base64url AK name, as the server names the credential (after enrollment).
    credential_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TpmState {
    tcti: String,
    ak_public: String,
    ak_private: String,
    #[serde(default)]
    credential_id: Option<String>,
}

/// What BeginTpmEnrollment needs from the TPM.
#[derive(Debug, Clone)]
pub struct TpmEvidence {
    /// TPM2B_PUBLIC of the EK.
    pub ek_public: Vec<u8>,
    /// The EK certificate as stored in NV (DER, possibly padded).
    pub ek_certificate: Vec<u8>,
    /// The certificates of the NV EK chain indices (0x01C00100–0x01C001FF).
    pub nv_chain: Vec<Candidate>,
    /// TPM2B_PUBLIC of the AK.
    pub ak_public: Vec<u8>,
}

struct Session {
    ctx: Context,
    ek: KeyHandle,
}

impl Session {
    fn open(tcti: &str) -> Result<Self, AgentError> {
        let conf = TctiNameConf::from_str(tcti)
            .map_err(|e| AgentError::Authenticator(format!("TPM: invalid TCTI {tcti:?}: {e}")))?;
        let mut ctx = Context::new(conf).map_err(tpm_error("cannot open the TCTI"))?;
        let ek = ek::create_ek_object_2(&mut ctx, AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048), None)
            .map_err(tpm_error("cannot create the endorsement key"))?;
        Ok(Self { ctx, ek })
    }

    fn load_ak(&mut self, key: &TpmKey) -> Result<KeyHandle, AgentError> {
        let public = public_from_tpm2b(&key.ak_public)?;
        let private =
            Private::try_from(key.ak_private.clone()).map_err(tpm_error("the stored AK is not a TPM2B_PRIVATE"))?;
        ak::load_ak(&mut self.ctx, self.ek, None, private, public).map_err(tpm_error("cannot load the attestation key"))
    }

    fn flush(&mut self, handle: impl Into<ObjectHandle>) {
        let _ = self.ctx.flush_context(handle.into());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let ek = self.ek;
        self.flush(ek);
    }
}

fn public_from_tpm2b(bytes: &[u8]) -> Result<Public, AgentError> {
    let buffer = PublicBuffer::unmarshall(bytes).map_err(tpm_error("the stored AK is not a TPM2B_PUBLIC"))?;
    Public::try_from(buffer).map_err(tpm_error("the stored AK public area cannot be read"))
}

fn public_to_tpm2b(public: Public) -> Result<Vec<u8>, AgentError> {
    PublicBuffer::try_from(public).and_then(|b| b.marshall()).map_err(tpm_error("cannot marshal a public area"))
}

impl TpmKey {
    /// Creates a new AK (RSA-2048, RSASSA-SHA256) under the EK of the TPM at `tcti`.
    pub fn create(tcti: &str) -> Result<Self, AgentError> {
        let mut s = Session::open(tcti)?;
        let created =
            ak::create_ak(&mut s.ctx, s.ek, HashingAlgorithm::Sha256, SignatureSchemeAlgorithm::RsaSsa, None, None)
                .map_err(tpm_error("cannot create the attestation key"))?;
        Ok(Self {
            tcti: tcti.to_string(),
            ak_public: public_to_tpm2b(created.out_public)?,
            ak_private: created.out_private.value().to_vec(),
            credential_id: None,
        })
    }

    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Restores the key from the state file's `authenticator_state`.
    pub fn from_state(state: &serde_json::Value) -> Result<Self, AgentError> {
        let s: TpmState = serde_json::from_value(state.clone())
            .map_err(|e| AgentError::State(format!("cannot restore the TPM key: {e}")))?;
        let decode = |what: &str, v: &str| {
            STANDARD.decode(v).map_err(|e| AgentError::State(format!("cannot restore the TPM key's {what}: {e}")))
        };
        Ok(Self {
            tcti: s.tcti,
            ak_public: decode("AK public area", &s.ak_public)?,
            ak_private: decode("AK private blob", &s.ak_private)?,
            credential_id: s.credential_id,
        })
    }

    /// EK public area, EK certificate and chain (from NV) and AK public area.
    pub fn evidence(&self) -> Result<TpmEvidence, AgentError> {
        let mut s = Session::open(&self.tcti)?;
        let (ek_public, _, _) = s.ctx.read_public(s.ek).map_err(tpm_error("cannot read the EK public area"))?;
        let ek_certificate =
            ek::retrieve_ek_pubcert(&mut s.ctx, AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048))
                .map_err(tpm_error("cannot read the EK certificate from NV index 0x01c00002"))?;
        let nv_chain = nv::read_chain(&mut s.ctx);
        Ok(TpmEvidence {
            ek_public: public_to_tpm2b(ek_public)?,
            ek_certificate,
            nv_chain,
            ak_public: self.ak_public.clone(),
        })
    }

    /// TPM2_ActivateCredential: the secret the server encrypted to this TPM's EK for this AK.
    pub fn activate(&self, credential_blob: &[u8], encrypted_secret: &[u8]) -> Result<Vec<u8>, AgentError> {
        let blob = IdObject::try_from(credential_blob.to_vec()).map_err(tpm_error("credential_blob"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(tpm_error("encrypted_secret"))?;
        let mut s = Session::open(&self.tcti)?;
        let ak = s.load_ak(self)?;
        let result = activate_with(&mut s, ak, blob, secret);
        s.flush(ak);
        result
    }

    /// TPM2_Quote over `nonce` (PCRs 0-7 of the SHA-256 bank) by the AK, with the quoted PCR
    /// values (TPM2_PCR_Read) as the `tpm2_quote -o` file. The PCRs are read before and after
    /// the quote; if they changed in between (or their values do not hash to the quote's PCR
    /// digest) the quote is taken again, at most [`QUOTE_ATTEMPTS`] times.
    pub fn quote(&self, nonce: &[u8]) -> Result<TpmQuote, AgentError> {
        let data = Data::try_from(nonce.to_vec()).map_err(tpm_error("the nonce is too long"))?;
        let mut s = Session::open(&self.tcti)?;
        let ak = s.load_ak(self)?;
        let quoted = quote_with_pcrs(&mut s.ctx, ak, &data);
        s.flush(ak);
        quoted
    }
}

/// How many times a quote is taken while the quoted PCRs keep changing under it.
pub const QUOTE_ATTEMPTS: usize = 3;

/// The PCRs every quote covers: 0-7 of the SHA-256 bank.
const QUOTED_PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

fn sha256_selection(indices: &[u32]) -> Result<PcrSelectionList, AgentError> {
    let slots = indices
        .iter()
        .map(|&i| {
            1u32.checked_shl(i)
                .and_then(|bit| PcrSlot::try_from(bit).ok())
                .ok_or_else(|| AgentError::Authenticator(format!("TPM: there is no PCR {i}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tpm_error("PCR selection"))
}

/// The quoted PCRs' values in selection order, with the TPM's PCR update counter; `None` if
/// a PCR changed between the TPM2_PCR_Read calls needed (a TPM returns at most 8 digests per
/// call, and may return fewer).
fn read_quoted_pcrs(ctx: &mut Context) -> Result<Option<(u32, PcrValues)>, AgentError> {
    let mut remaining = QUOTED_PCRS.to_vec();
    let mut read: Vec<PcrValue> = Vec::new();
    let mut counter = None;
    // Each call returns at least one value or fails below, so this many calls always suffice.
    for _ in 0..QUOTED_PCRS.len() {
        if remaining.is_empty() {
            break;
        }
        let (update_counter, selected, digests) =
            ctx.pcr_read(sha256_selection(&remaining)?).map_err(tpm_error("TPM2_PCR_Read failed"))?;
        if counter.is_some_and(|c| c != update_counter) {
            return Ok(None);
        }
        counter = Some(update_counter);
        let slots = selected
            .get_selections()
            .iter()
            .flat_map(|bank| bank.selected().into_iter().map(move |slot| (bank.hashing_algorithm(), slot)))
            .collect::<Vec<_>>();
        if slots.len() != digests.value().len() {
            return Err(AgentError::Authenticator(format!(
                "TPM: TPM2_PCR_Read returned {} values for {} PCRs",
                digests.value().len(),
                slots.len()
            )));
        }
        let before = remaining.len();
        for ((hash, slot), digest) in slots.into_iter().zip(digests.value()) {
            let index = u32::from(slot).trailing_zeros();
            if hash == HashingAlgorithm::Sha256 && remaining.contains(&index) {
                remaining.retain(|&i| i != index);
                read.push(PcrValue { bank: HashAlg::Sha256, index, value: digest.value().to_vec() });
            }
        }
        if remaining.len() == before {
            return Err(AgentError::Authenticator(format!(
                "TPM: TPM2_PCR_Read returned no value for sha256 PCRs {remaining:?} (is the SHA-256 bank active?)"
            )));
        }
    }
    if !remaining.is_empty() {
        return Err(AgentError::Authenticator(format!("TPM: TPM2_PCR_Read left sha256 PCRs {remaining:?} unread")));
    }
    read.sort_by_key(|v| v.index);
    Ok(counter.map(|c| (c, PcrValues { values: read })))
}

fn quote_with_pcrs(ctx: &mut Context, ak: KeyHandle, data: &Data) -> Result<TpmQuote, AgentError> {
    for _ in 0..QUOTE_ATTEMPTS {
        let Some(before) = read_quoted_pcrs(ctx)? else { continue };
        let selection = sha256_selection(&QUOTED_PCRS)?;
        let (attest, signature) = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.quote(ak, data.clone(), SignatureScheme::Null, selection)
            })
            .map_err(tpm_error("TPM2_Quote failed"))?;
        let Some(after) = read_quoted_pcrs(ctx)? else { continue };
        // The AK signs with RSASSA-SHA256, so the quote's PCR digest is a SHA-256 digest.
        let digest_matches = match attest.attested() {
            AttestInfo::Quote { info } => info.pcr_digest().value() == after.1.digest(HashAlg::Sha256).as_slice(),
            _ => false,
        };
        if before != after || !digest_matches {
            tracing::debug!("the quoted PCRs changed while quoting; quoting again");
            continue;
        }
        return Ok(TpmQuote {
            attest: attest.marshall().map_err(tpm_error("cannot marshal TPMS_ATTEST"))?,
            signature: signature.marshall().map_err(tpm_error("cannot marshal TPMT_SIGNATURE"))?,
            pcrs: after.1.to_tpm2_tools().map_err(|e| AgentError::Authenticator(format!("TPM: {e}")))?,
        });
    }
    Err(AgentError::Authenticator(format!(
        "TPM: the quoted PCRs changed during each of {QUOTE_ATTEMPTS} quotes; try again"
    )))
}

fn activate_with(
    s: &mut Session,
    ak: KeyHandle,
    blob: IdObject,
    secret: EncryptedSecret,
) -> Result<Vec<u8>, AgentError> {
    // The EK authorizes with its policy: PolicySecret(endorsement) in a policy session.
    let policy = s
        .ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm_error("cannot start a policy session"))?
        .ok_or_else(|| AgentError::Authenticator("TPM: no policy session was returned".into()))?;
    let result = (|| {
        let (attributes, mask) = SessionAttributesBuilder::new().build();
        s.ctx.tr_sess_set_attributes(policy, attributes, mask).map_err(tpm_error("session attributes"))?;
        let policy_session = PolicySession::try_from(policy).map_err(tpm_error("policy session"))?;
        s.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.policy_secret(
                    policy_session,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(tpm_error("PolicySecret(endorsement) failed"))?;
        s.ctx.set_sessions((Some(AuthSession::Password), Some(policy), None));
        let recovered = s.ctx.activate_credential(ak, s.ek, blob, secret);
        s.ctx.clear_sessions();
        recovered.map(|d| d.value().to_vec()).map_err(tpm_error("TPM2_ActivateCredential failed"))
    })();
    let _ = s.ctx.flush_context(SessionHandle::from(policy).into());
    result
}

impl Authenticator for TpmKey {
    fn backend(&self) -> &'static str {
        TPM_BACKEND
    }

    fn make_credential(&mut self, _creation_options_json: &str, _origin: &str) -> Result<String, AgentError> {
        Err(AgentError::Authenticator(
            "a TPM attestation key enrolls with credential activation (tether-agent enroll --tpm), not WebAuthn".into(),
        ))
    }

    fn get_assertion(&mut self, _request_options_json: &str, _origin: &str) -> Result<String, AgentError> {
        Err(AgentError::Authenticator("a TPM attestation key answers with quotes, not WebAuthn assertions".into()))
    }

    fn credential_id(&self) -> Option<Vec<u8>> {
        let id = self.credential_id.as_ref()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id).ok()
    }

    fn to_state_json(&self) -> String {
        serde_json::json!(TpmState {
            tcti: self.tcti.clone(),
            ak_public: STANDARD.encode(&self.ak_public),
            ak_private: STANDARD.encode(&self.ak_private),
            credential_id: self.credential_id.clone(),
        })
        .to_string()
    }

    fn tpm_quote(&mut self, nonce: &[u8]) -> Option<Result<TpmQuote, AgentError>> {
        Some(self.quote(nonce))
    }
}
