//! The W3C WebAuthn Level 3 JSON shapes (`PublicKeyCredential.toJSON()`,
//! `PublicKeyCredentialCreationOptionsJSON`, `PublicKeyCredentialRequestOptionsJSON`).
//!
//! Binary members stay base64url strings here, exactly as they travel; the parsing
//! constructors check that every one of them decodes so that later stages never see
//! undecodable input.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::b64url_decode;

/// Why a JSON document could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the document is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("the field `{field}` is not valid base64url; binary WebAuthn fields must be base64url-encoded")]
    InvalidBase64 { field: &'static str },
    #[error("the document is {size} bytes, more than the {limit}-byte limit for WebAuthn JSON")]
    TooLarge { size: usize, limit: usize },
}

/// Real responses are a few kilobytes; anything far larger is refused before parsing.
const MAX_JSON_BYTES: usize = 256 * 1024;

fn default_public_key() -> String {
    "public-key".to_owned()
}

/// `RegistrationResponseJSON`: the result of `navigator.credentials.create()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationResponseJson {
    pub id: String,
    pub raw_id: String,
    /// Always "public-key"; some serialisers omit it, which is harmless.
    #[serde(rename = "type", default = "default_public_key")]
    pub type_: String,
    pub response: AttestationResponseJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_attachment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_extension_results: Option<serde_json::Value>,
}

/// `AuthenticatorAttestationResponseJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationResponseJson {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    pub attestation_object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<Vec<String>>,
}

/// `AuthenticationResponseJSON`: the result of `navigator.credentials.get()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationResponseJson {
    pub id: String,
    pub raw_id: String,
    #[serde(rename = "type", default = "default_public_key")]
    pub type_: String,
    pub response: AssertionResponseJson,
}

/// `AuthenticatorAssertionResponseJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssertionResponseJson {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    pub authenticator_data: String,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<String>,
}

/// `PublicKeyCredentialCreationOptionsJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationOptionsJson {
    pub rp: RpEntity,
    pub user: UserEntity,
    pub challenge: String,
    pub pub_key_cred_params: Vec<PubKeyCredParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default = "default_attestation")]
    pub attestation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_selection: Option<AuthenticatorSelection>,
    #[serde(default)]
    pub exclude_credentials: Vec<CredentialDescriptor>,
}

fn default_attestation() -> String {
    "none".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpEntity {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntity {
    /// The user handle, base64url.
    pub id: String,
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubKeyCredParam {
    #[serde(rename = "type", default = "default_public_key")]
    pub type_: String,
    /// A COSE algorithm identifier, e.g. -7 (ES256), -8 (EdDSA), -257 (RS256).
    pub alg: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_verification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_resident_key: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialDescriptor {
    #[serde(rename = "type", default = "default_public_key")]
    pub type_: String,
    /// The credential id, base64url.
    pub id: String,
}

/// `PublicKeyCredentialRequestOptionsJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptionsJson {
    pub challenge: String,
    pub rp_id: String,
    #[serde(default)]
    pub allow_credentials: Vec<CredentialDescriptor>,
    #[serde(default = "default_user_verification")]
    pub user_verification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

fn default_user_verification() -> String {
    "preferred".to_owned()
}

fn parse_document<T: serde::de::DeserializeOwned>(input: &str) -> Result<T, JsonError> {
    if input.len() > MAX_JSON_BYTES {
        return Err(JsonError::TooLarge { size: input.len(), limit: MAX_JSON_BYTES });
    }
    serde_json::from_str(input).map_err(|e| JsonError::Malformed(e.to_string()))
}

fn check_b64(field: &'static str, value: &str) -> Result<(), JsonError> {
    b64url_decode(value).map(drop).map_err(|_| JsonError::InvalidBase64 { field })
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These types are plain strings, numbers and JSON values, which always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

impl RegistrationResponseJson {
    /// Parses the JSON and checks that every binary field is base64url.
    pub fn from_json(input: &str) -> Result<Self, JsonError> {
        let value: Self = parse_document(input)?;
        check_b64("id", &value.id)?;
        check_b64("rawId", &value.raw_id)?;
        check_b64("response.clientDataJSON", &value.response.client_data_json)?;
        check_b64("response.attestationObject", &value.response.attestation_object)?;
        Ok(value)
    }

    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl AuthenticationResponseJson {
    /// Parses the JSON and checks that every binary field is base64url.
    pub fn from_json(input: &str) -> Result<Self, JsonError> {
        let value: Self = parse_document(input)?;
        check_b64("id", &value.id)?;
        check_b64("rawId", &value.raw_id)?;
        check_b64("response.clientDataJSON", &value.response.client_data_json)?;
        check_b64("response.authenticatorData", &value.response.authenticator_data)?;
        check_b64("response.signature", &value.response.signature)?;
        if let Some(handle) = &value.response.user_handle {
            check_b64("response.userHandle", handle)?;
        }
        Ok(value)
    }

    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl CreationOptionsJson {
    /// Parses the JSON and checks that the challenge, user id and excluded ids are base64url.
    pub fn from_json(input: &str) -> Result<Self, JsonError> {
        let value: Self = parse_document(input)?;
        check_b64("challenge", &value.challenge)?;
        check_b64("user.id", &value.user.id)?;
        for descriptor in &value.exclude_credentials {
            check_b64("excludeCredentials[].id", &descriptor.id)?;
        }
        Ok(value)
    }

    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl RequestOptionsJson {
    /// Parses the JSON and checks that the challenge and allowed ids are base64url.
    pub fn from_json(input: &str) -> Result<Self, JsonError> {
        let value: Self = parse_document(input)?;
        check_b64("challenge", &value.challenge)?;
        for descriptor in &value.allow_credentials {
            check_b64("allowCredentials[].id", &descriptor.id)?;
        }
        Ok(value)
    }

    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

macro_rules! from_str_via_from_json {
    ($($ty:ty),*) => {$(
        impl FromStr for $ty {
            type Err = JsonError;
            fn from_str(input: &str) -> Result<Self, Self::Err> {
                Self::from_json(input)
            }
        }
    )*};
}

from_str_via_from_json!(RegistrationResponseJson, AuthenticationResponseJson, CreationOptionsJson, RequestOptionsJson);
