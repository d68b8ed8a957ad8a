//! Authentication (WebAuthn §7.2): verifies an `AuthenticationResponseJSON` made with a
//! registered credential. Signature-counter regression is the caller's business: it needs
//! the stored counter and decides what a suspected clone means.

use crate::authdata::{AuthDataError, AuthenticatorData};
use crate::client_data::{self, ClientDataError};
use crate::cose::{CoseError, CredentialPublicKey};
use crate::json::AuthenticationResponseJson;
use crate::registration::sha256;

/// Authenticator data of an assertion is 37 bytes plus optional extensions.
const MAX_AUTHENTICATOR_DATA_BYTES: usize = 16 * 1024;

/// What the relying party issued for this ceremony.
#[derive(Debug, Clone, Copy)]
pub struct AssertionExpectation<'a> {
    pub rp_id: &'a str,
    pub origin: &'a str,
    /// The raw challenge bytes (not base64).
    pub challenge: &'a [u8],
    pub require_user_verification: bool,
}

/// The facts of a valid assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub sign_count: u32,
    pub user_verified: bool,
    pub user_present: bool,
}

/// Why an assertion is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the credential type is \"{0}\", but WebAuthn credentials must be \"public-key\"")]
    WrongCredentialType(String),
    #[error("the field `{0}` is not valid base64url")]
    Base64(&'static str),
    #[error("`id` and `rawId` name different credentials")]
    IdMismatch,
    #[error("the assertion was made with a different credential than the one expected")]
    WrongCredential,
    #[error("clientDataJSON is unusable: {0}")]
    ClientData(#[from] ClientDataError),
    #[error("clientDataJSON has type \"{0}\", but an assertion must have \"webauthn.get\"")]
    WrongCeremonyType(String),
    #[error("the challenge in clientDataJSON is not the one issued for this authentication")]
    ChallengeMismatch,
    #[error("the response comes from origin \"{actual}\", but \"{expected}\" was expected")]
    OriginMismatch { expected: String, actual: String },
    #[error("the assertion was made from a cross-origin frame, which is not allowed")]
    CrossOrigin,
    #[error("the authenticator data is {0} bytes, more than an assertion can carry")]
    AuthDataTooLarge(usize),
    #[error("the authenticator data is unusable: {0}")]
    AuthData(#[from] AuthDataError),
    #[error("the authenticator data was made for a different relying party than \"{0}\"")]
    RpIdMismatch(String),
    #[error("the user-present (UP) flag is not set: nobody touched the authenticator")]
    UserNotPresent,
    #[error("user verification was required, but the authenticator did not verify the user (UV flag)")]
    UserNotVerified,
    #[error("the assertion signature does not verify with the registered public key")]
    BadSignature(#[source] CoseError),
}

/// Verifies an assertion made with the credential `credential_id` whose public key is `key`.
pub fn verify_assertion(
    resp: &AuthenticationResponseJson,
    expect: &AssertionExpectation<'_>,
    credential_id: &[u8],
    key: &CredentialPublicKey,
) -> Result<VerifiedAssertion, AssertionError> {
    if resp.type_ != "public-key" {
        return Err(AssertionError::WrongCredentialType(resp.type_.clone()));
    }
    let raw_id = decode("rawId", &resp.raw_id)?;
    if decode("id", &resp.id)? != raw_id {
        return Err(AssertionError::IdMismatch);
    }
    if raw_id != credential_id {
        return Err(AssertionError::WrongCredential);
    }
    let client_data_json = decode("response.clientDataJSON", &resp.response.client_data_json)?;
    let client_data = client_data::parse_client_data_json(&client_data_json)?;
    if client_data.type_ != "webauthn.get" {
        return Err(AssertionError::WrongCeremonyType(client_data.type_));
    }
    if client_data.challenge != expect.challenge {
        return Err(AssertionError::ChallengeMismatch);
    }
    if client_data.origin != expect.origin {
        return Err(AssertionError::OriginMismatch { expected: expect.origin.to_owned(), actual: client_data.origin });
    }
    if client_data.cross_origin == Some(true) {
        return Err(AssertionError::CrossOrigin);
    }

    let auth_data_bytes = decode("response.authenticatorData", &resp.response.authenticator_data)?;
    if auth_data_bytes.len() > MAX_AUTHENTICATOR_DATA_BYTES {
        return Err(AssertionError::AuthDataTooLarge(auth_data_bytes.len()));
    }
    let auth_data = AuthenticatorData::parse(&auth_data_bytes)?;
    if auth_data.rp_id_hash != sha256(expect.rp_id.as_bytes()) {
        return Err(AssertionError::RpIdMismatch(expect.rp_id.to_owned()));
    }
    if !auth_data.user_present() {
        return Err(AssertionError::UserNotPresent);
    }
    if expect.require_user_verification && !auth_data.user_verified() {
        return Err(AssertionError::UserNotVerified);
    }

    let signature = decode("response.signature", &resp.response.signature)?;
    let signed = [auth_data_bytes.as_slice(), &sha256(&client_data_json)].concat();
    key.verify(&signed, &signature).map_err(AssertionError::BadSignature)?;
    Ok(VerifiedAssertion {
        sign_count: auth_data.sign_count,
        user_verified: auth_data.user_verified(),
        user_present: auth_data.user_present(),
    })
}

/// Whether the assertion's signature verifies with `key` over its own authenticator data and
/// client data, whatever they say: the proof that whoever sent it holds the credential's key
/// (or a message it signed). Nothing else is checked — [`verify_assertion`] does that — so a
/// caller can tell an answer from the device, right or wrong, from one anybody could make.
pub fn verify_signature(resp: &AuthenticationResponseJson, key: &CredentialPublicKey) -> Result<(), AssertionError> {
    let client_data_json = decode("response.clientDataJSON", &resp.response.client_data_json)?;
    let auth_data_bytes = decode("response.authenticatorData", &resp.response.authenticator_data)?;
    if auth_data_bytes.len() > MAX_AUTHENTICATOR_DATA_BYTES {
        return Err(AssertionError::AuthDataTooLarge(auth_data_bytes.len()));
    }
    let signature = decode("response.signature", &resp.response.signature)?;
    let signed = [auth_data_bytes.as_slice(), &sha256(&client_data_json)].concat();
    key.verify(&signed, &signature).map_err(AssertionError::BadSignature)
}

fn decode(field: &'static str, value: &str) -> Result<Vec<u8>, AssertionError> {
    crate::b64url_decode(value).map_err(|_| AssertionError::Base64(field))
}
