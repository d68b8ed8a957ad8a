//! The authenticator abstraction: whatever holds the device's hardware-bound
//! key: the software authenticator, or the TPM backend (`crate::tpm`, cargo
//! feature `tpm`), which answers with quotes through [`Authenticator::tpm_quote`].

use std::path::PathBuf;

use tether_softkey::SoftAuthenticator;

use crate::{AgentError, AgentState};

/// The backend name stored in the state file for [`SoftAuthenticator`].
pub const SOFTKEY_BACKEND: &str = "softkey";

/// A WebAuthn authenticator holding (at most) one credential.
pub trait Authenticator: Send {
    /// A stable name for the backend, stored in the state file ("softkey").
    fn backend(&self) -> &'static str;

    /// Create the credential: `PublicKeyCredentialCreationOptionsJSON` in,
    /// `RegistrationResponseJSON` out.
    fn make_credential(&mut self, creation_options_json: &str, origin: &str) -> Result<String, AgentError>;

    /// Sign a challenge: `PublicKeyCredentialRequestOptionsJSON` in,
    /// `AuthenticationResponseJSON` out.
    fn get_assertion(&mut self, request_options_json: &str, origin: &str) -> Result<String, AgentError>;

    /// The raw credential id, once a credential exists.
    fn credential_id(&self) -> Option<Vec<u8>>;

    /// Everything needed to restore the authenticator (keys, sign counter) as JSON.
    fn to_state_json(&self) -> String;

    /// The signature counter, for backends that keep one.
    fn sign_count(&self) -> Option<u32> {
        None
    }

    /// For backends whose credential is a TPM attestation key: a TPM2_Quote over the
    /// challenge nonce. `None` (the default) answers with a WebAuthn assertion instead.
    fn tpm_quote(&mut self, _nonce: &[u8]) -> Option<Result<tether_proto::v1::TpmQuote, AgentError>> {
        None
    }
}

impl Authenticator for SoftAuthenticator {
    fn backend(&self) -> &'static str {
        SOFTKEY_BACKEND
    }

    fn make_credential(&mut self, creation_options_json: &str, origin: &str) -> Result<String, AgentError> {
        SoftAuthenticator::make_credential(self, creation_options_json, origin)
            .map_err(|e| AgentError::Authenticator(e.to_string()))
    }

    fn get_assertion(&mut self, request_options_json: &str, origin: &str) -> Result<String, AgentError> {
        SoftAuthenticator::get_assertion(self, request_options_json, origin)
            .map_err(|e| AgentError::Authenticator(e.to_string()))
    }

    fn credential_id(&self) -> Option<Vec<u8>> {
        SoftAuthenticator::credential_id(self)
    }

    fn to_state_json(&self) -> String {
        SoftAuthenticator::to_state_json(self)
    }

    fn sign_count(&self) -> Option<u32> {
        Some(SoftAuthenticator::sign_count(self))
    }
}

/// Restore an authenticator from its backend name and saved state.
pub fn restore_authenticator(backend: &str, state: &serde_json::Value) -> Result<Box<dyn Authenticator>, AgentError> {
    match backend {
        SOFTKEY_BACKEND => {
            let soft = SoftAuthenticator::from_state_json(&state.to_string())
                .map_err(|e| AgentError::State(format!("cannot restore the softkey authenticator: {e}")))?;
            Ok(Box::new(soft))
        }
        #[cfg(feature = "tpm")]
        crate::tpm::TPM_BACKEND => Ok(Box::new(crate::tpm::TpmKey::from_state(state)?)),
        #[cfg(not(feature = "tpm"))]
        "tpm" => Err(AgentError::State(
            "this state file holds a TPM key, but this agent was built without the `tpm` feature \
             (cargo build -p tether-agent --features tpm)"
                .into(),
        )),
        other => Err(AgentError::State(format!(
            "unknown authenticator backend {other:?} (this agent supports {SOFTKEY_BACKEND:?})"
        ))),
    }
}

/// An authenticator that writes the state file after every signature, before
/// the signature leaves the process.
///
/// The order matters: if the agent crashed after answering but before saving,
/// the next answer would reuse a signature counter, which the server reads as
/// a cloned key. If the state cannot be saved, the assertion is withheld and
/// an error returned instead.
pub struct PersistingAuthenticator {
    inner: Box<dyn Authenticator>,
    state: AgentState,
    path: PathBuf,
}

impl PersistingAuthenticator {
    /// Wrap `inner`; `state` is what gets written to `path` (its
    /// `authenticator_state` is refreshed on every save).
    pub fn new(inner: Box<dyn Authenticator>, state: AgentState, path: impl Into<PathBuf>) -> Self {
        Self { inner, state, path: path.into() }
    }

    /// Restore the authenticator described by the state file at `path`.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let path = path.into();
        let state = AgentState::load(&path)?;
        let inner = state.authenticator()?;
        Ok(Self::new(inner, state, path))
    }

    /// The state as last saved (or loaded).
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// Refresh the authenticator state and write the file.
    pub fn save(&mut self) -> Result<(), AgentError> {
        self.state.authenticator_state = serde_json::from_str(&self.inner.to_state_json())
            .map_err(|e| AgentError::State(format!("authenticator state is not JSON: {e}")))?;
        self.state.save(&self.path)
    }
}

impl Authenticator for PersistingAuthenticator {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn make_credential(&mut self, creation_options_json: &str, origin: &str) -> Result<String, AgentError> {
        let response = self.inner.make_credential(creation_options_json, origin)?;
        self.save()?;
        Ok(response)
    }

    fn get_assertion(&mut self, request_options_json: &str, origin: &str) -> Result<String, AgentError> {
        let response = self.inner.get_assertion(request_options_json, origin)?;
        self.save().map_err(|e| {
            AgentError::Authenticator(format!(
                "signed, but withholding the answer because the sign counter could not be saved ({e})"
            ))
        })?;
        Ok(response)
    }

    fn credential_id(&self) -> Option<Vec<u8>> {
        self.inner.credential_id()
    }

    fn to_state_json(&self) -> String {
        self.inner.to_state_json()
    }

    fn sign_count(&self) -> Option<u32> {
        self.inner.sign_count()
    }

    /// A TPM keeps its state in the TPM: a quote changes nothing to save.
    fn tpm_quote(&mut self, nonce: &[u8]) -> Option<Result<tether_proto::v1::TpmQuote, AgentError>> {
        self.inner.tpm_quote(nonce)
    }
}
