//! Registration (WebAuthn §7.1): verifies a `RegistrationResponseJSON` against what the
//! relying party expects and classifies its attestation.

use ring::digest;
use time::OffsetDateTime;

use crate::authdata::{AuthDataError, AuthenticatorData};
use crate::cbor::{self, Map};
use crate::client_data::{self, ClientDataError};
use crate::cose::CredentialPublicKey;
use crate::json::RegistrationResponseJson;
use crate::statement::{self, Context};
use crate::trust::TrustStore;

pub use crate::statement::StatementError;

/// Attestation objects are a few KiB even with five certificates.
const MAX_ATTESTATION_OBJECT_BYTES: usize = 64 * 1024;

/// What the relying party issued for this ceremony.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationExpectation<'a> {
    pub rp_id: &'a str,
    /// The exact origin, e.g. "https://login.example.com".
    pub origin: &'a str,
    /// The raw challenge bytes (not base64).
    pub challenge: &'a [u8],
}

/// The attestation statement format (`fmt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttestationFormat {
    Packed,
    FidoU2f,
    AndroidKey,
    Apple,
    Tpm,
    AndroidSafetynet,
    None,
}

impl AttestationFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Packed => "packed",
            Self::FidoU2f => "fido-u2f",
            Self::AndroidKey => "android-key",
            Self::Apple => "apple",
            Self::Tpm => "tpm",
            Self::AndroidSafetynet => "android-safetynet",
            Self::None => "none",
        }
    }

    /// Parses a WebAuthn `fmt` identifier (case-sensitive, as the specification requires).
    pub fn from_fmt(fmt: &str) -> Option<Self> {
        [Self::Packed, Self::FidoU2f, Self::AndroidKey, Self::Apple, Self::Tpm, Self::AndroidSafetynet, Self::None]
            .into_iter()
            .find(|f| f.as_str() == fmt)
    }
}

impl std::fmt::Display for AttestationFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attestation type (WebAuthn §6.5.4) the statement conveys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttestationType {
    Basic,
    AttCa,
    AnonCa,
    SelfAttestation,
    None,
}

impl AttestationType {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::AttCa => "attca",
            Self::AnonCa => "anonca",
            Self::SelfAttestation => "self",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for AttestationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the attestation proves the authenticator's provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationTrust {
    /// The statement is valid and its chain ends at this trust anchor.
    Trusted { anchor_subject: String },
    /// The statement is valid but provenance is not established (chain problem, unknown
    /// root, or a format that is not verified).
    Untrusted { reason: String },
    /// Self attestation or no attestation: nothing to trust.
    SelfOrNone,
}

impl AttestationTrust {
    pub fn is_trusted(&self) -> bool {
        matches!(self, Self::Trusted { .. })
    }
}

/// A registration whose ceremony checks and attestation statement verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRegistration {
    pub credential_id: Vec<u8>,
    pub public_key: CredentialPublicKey,
    pub sign_count: u32,
    pub aaguid: uuid::Uuid,
    pub format: AttestationFormat,
    pub attestation_type: AttestationType,
    pub trust: AttestationTrust,
    /// Lowercase hex SHA-1 of the attestation certificate's public key (the key identifier FIDO
    /// metadata lists U2F batch keys by); None without an attestation certificate.
    pub attestation_key_id: Option<String>,
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

impl VerifiedRegistration {
    /// Ok only when the attestation is trusted and, if `allowed_aaguids` is not empty, the
    /// authenticator model is in it. The error says why the credential is not attested.
    pub fn is_attested(&self, allowed_aaguids: &[uuid::Uuid]) -> Result<(), String> {
        match &self.trust {
            AttestationTrust::Trusted { .. }
                if allowed_aaguids.is_empty() || allowed_aaguids.contains(&self.aaguid) =>
            {
                Ok(())
            }
            AttestationTrust::Trusted { .. } => {
                Err(format!("the authenticator model (AAGUID {}) is not in the list of allowed models", self.aaguid))
            }
            AttestationTrust::Untrusted { reason } => Err(format!("the attestation is not trusted: {reason}")),
            AttestationTrust::SelfOrNone => Err(format!(
                "the authenticator gave {} attestation, which proves nothing about the device",
                if self.attestation_type == AttestationType::SelfAttestation { "self" } else { "no" }
            )),
        }
    }
}

/// Why a registration ceremony is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the credential type is \"{0}\", but WebAuthn credentials must be \"public-key\"")]
    WrongCredentialType(String),
    #[error("the field `{0}` is not valid base64url")]
    Base64(&'static str),
    #[error("`id` and `rawId` name different credentials")]
    IdMismatch,
    #[error("clientDataJSON is unusable: {0}")]
    ClientData(#[from] ClientDataError),
    #[error("clientDataJSON has type \"{0}\", but a registration must have \"webauthn.create\"")]
    WrongCeremonyType(String),
    #[error("the challenge in clientDataJSON is not the one issued for this registration")]
    ChallengeMismatch,
    #[error("the response comes from origin \"{actual}\", but \"{expected}\" was expected")]
    OriginMismatch { expected: String, actual: String },
    #[error("the registration was made from a cross-origin frame, which is not allowed")]
    CrossOrigin,
    #[error("the attestation object is unusable: {0}")]
    AttestationObject(String),
    #[error("the authenticator data is unusable: {0}")]
    AuthData(#[from] AuthDataError),
    #[error("the authenticator data was made for a different relying party than \"{0}\"")]
    RpIdMismatch(String),
    #[error("the user-present (UP) flag is not set: nobody touched the authenticator")]
    UserNotPresent,
    #[error("the authenticator data carries no attested credential data (AT flag not set)")]
    NoCredentialData,
    #[error("the credential id in the authenticator data differs from the response's rawId")]
    CredentialIdMismatch,
    #[error("the attestation format \"{0}\" is not supported")]
    UnsupportedFormat(String),
    #[error("the {format} attestation statement is invalid: {source}")]
    InvalidStatement { format: &'static str, source: StatementError },
}

/// Verifies a registration response. `Err` means the ceremony is invalid; `Ok` carries the
/// credential and whether its attestation is trusted at `at`.
pub fn verify_registration(
    resp: &RegistrationResponseJson,
    expect: &RegistrationExpectation<'_>,
    trust: &TrustStore,
    at: OffsetDateTime,
) -> Result<VerifiedRegistration, RegistrationError> {
    if resp.type_ != "public-key" {
        return Err(RegistrationError::WrongCredentialType(resp.type_.clone()));
    }
    let raw_id = decode("rawId", &resp.raw_id)?;
    if decode("id", &resp.id)? != raw_id {
        return Err(RegistrationError::IdMismatch);
    }
    let client_data_json = decode("response.clientDataJSON", &resp.response.client_data_json)?;
    check_client_data(&client_data_json, expect)?;
    let client_data_hash: [u8; 32] = sha256(&client_data_json);

    let attestation_object = decode("response.attestationObject", &resp.response.attestation_object)?;
    let object = cbor::decode_exact(&attestation_object, MAX_ATTESTATION_OBJECT_BYTES)
        .map_err(|e| RegistrationError::AttestationObject(e.to_string()))?;
    let (fmt, att_stmt, auth_data_bytes) = split_attestation_object(&object)?;

    let auth_data = AuthenticatorData::parse(auth_data_bytes)?;
    if auth_data.rp_id_hash != sha256(expect.rp_id.as_bytes()) {
        return Err(RegistrationError::RpIdMismatch(expect.rp_id.to_owned()));
    }
    if !auth_data.user_present() {
        return Err(RegistrationError::UserNotPresent);
    }
    let credential = auth_data.attested.as_ref().ok_or(RegistrationError::NoCredentialData)?;
    if credential.credential_id != raw_id {
        return Err(RegistrationError::CredentialIdMismatch);
    }
    let format =
        AttestationFormat::from_fmt(fmt).ok_or_else(|| RegistrationError::UnsupportedFormat(fmt.to_owned()))?;
    let ctx =
        Context { auth_data_bytes, auth_data: &auth_data, credential, client_data_hash: &client_data_hash, trust, at };
    let outcome = statement::verify(format, att_stmt, &ctx)
        .map_err(|source| RegistrationError::InvalidStatement { format: format.as_str(), source })?;
    Ok(VerifiedRegistration {
        credential_id: credential.credential_id.clone(),
        public_key: credential.public_key.clone(),
        sign_count: auth_data.sign_count,
        aaguid: uuid::Uuid::from_bytes(credential.aaguid),
        format,
        attestation_type: outcome.attestation_type,
        trust: outcome.trust,
        attestation_key_id: statement::attestation_key_id(att_stmt),
        user_present: auth_data.user_present(),
        user_verified: auth_data.user_verified(),
        backup_eligible: auth_data.backup_eligible(),
        backed_up: auth_data.backed_up(),
    })
}

fn decode(field: &'static str, value: &str) -> Result<Vec<u8>, RegistrationError> {
    crate::b64url_decode(value).map_err(|_| RegistrationError::Base64(field))
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

fn check_client_data(json: &[u8], expect: &RegistrationExpectation<'_>) -> Result<(), RegistrationError> {
    let data = client_data::parse_client_data_json(json)?;
    if data.type_ != "webauthn.create" {
        return Err(RegistrationError::WrongCeremonyType(data.type_));
    }
    if data.challenge != expect.challenge {
        return Err(RegistrationError::ChallengeMismatch);
    }
    if data.origin != expect.origin {
        return Err(RegistrationError::OriginMismatch { expected: expect.origin.to_owned(), actual: data.origin });
    }
    if data.cross_origin == Some(true) {
        return Err(RegistrationError::CrossOrigin);
    }
    Ok(())
}

/// Splits `{ "fmt": text, "attStmt": map, "authData": bytes }`.
fn split_attestation_object(object: &ciborium::Value) -> Result<(&str, &ciborium::Value, &[u8]), RegistrationError> {
    let bad = |msg: &str| RegistrationError::AttestationObject(msg.to_owned());
    let map = Map::new(object).map_err(|e| RegistrationError::AttestationObject(e.to_string()))?;
    let fmt = map.text("fmt").and_then(|v| v.as_text()).ok_or_else(|| bad("\"fmt\" is missing or not text"))?;
    let att_stmt =
        map.text("attStmt").filter(|v| v.is_map()).ok_or_else(|| bad("\"attStmt\" is missing or not a map"))?;
    let auth_data = map
        .text("authData")
        .and_then(|v| v.as_bytes())
        .ok_or_else(|| bad("\"authData\" is missing or not a byte string"))?;
    Ok((fmt, att_stmt, auth_data))
}
