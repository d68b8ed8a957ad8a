//! `CollectedClientData` (the clientDataJSON the browser signs over).

use serde::Deserialize;

use crate::b64url_decode;

/// Browsers produce a few hundred bytes; larger input is refused before parsing.
const MAX_CLIENT_DATA_BYTES: usize = 16 * 1024;

/// The members of clientDataJSON that a relying party checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    /// "webauthn.create" or "webauthn.get".
    pub type_: String,
    /// The challenge, decoded from base64url.
    pub challenge: Vec<u8>,
    pub origin: String,
    pub cross_origin: Option<bool>,
}

/// Why clientDataJSON could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientDataError {
    #[error("clientDataJSON is neither JSON nor base64url-encoded JSON")]
    NotBase64,
    #[error("clientDataJSON is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("clientDataJSON is not a valid client data object: {0}")]
    Malformed(String),
    #[error("the challenge in clientDataJSON is not base64url")]
    ChallengeNotBase64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(rename = "type")]
    type_: String,
    challenge: String,
    origin: String,
    #[serde(default)]
    cross_origin: Option<bool>,
}

/// Parses clientDataJSON given either as its raw bytes or as the base64url string from a
/// response. JSON always starts with `{` (after optional whitespace), which is not a base64url
/// character, so the two forms cannot be confused.
pub fn parse_client_data(input: impl AsRef<[u8]>) -> Result<ClientData, ClientDataError> {
    let input = input.as_ref();
    let looks_like_json = input.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{');
    if looks_like_json {
        parse_client_data_json(input)
    } else {
        let text = std::str::from_utf8(input).map_err(|_| ClientDataError::NotBase64)?;
        let bytes = b64url_decode(text).map_err(|_| ClientDataError::NotBase64)?;
        parse_client_data_json(&bytes)
    }
}

/// Parses the raw clientDataJSON bytes.
pub(crate) fn parse_client_data_json(bytes: &[u8]) -> Result<ClientData, ClientDataError> {
    if bytes.len() > MAX_CLIENT_DATA_BYTES {
        return Err(ClientDataError::TooLarge { size: bytes.len(), limit: MAX_CLIENT_DATA_BYTES });
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ClientDataError::Malformed(e.to_string()))?;
    let challenge = b64url_decode(&raw.challenge).map_err(|_| ClientDataError::ChallengeNotBase64)?;
    Ok(ClientData { type_: raw.type_, challenge, origin: raw.origin, cross_origin: raw.cross_origin })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64url_encode;

    const SAMPLE: &str =
        r#"{"type":"webauthn.get","challenge":"AQID","origin":"https://a.example","crossOrigin":false}"#;

    #[test]
    fn parses_raw_and_base64url_forms() {
        let raw = parse_client_data(SAMPLE).ok();
        let encoded = parse_client_data(b64url_encode(SAMPLE.as_bytes())).ok();
        assert_eq!(raw, encoded);
        let data = raw.unwrap_or_else(|| panic!("sample must parse"));
        assert_eq!(data.challenge, vec![1, 2, 3]);
        assert_eq!(data.cross_origin, Some(false));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_client_data("%%%").is_err());
        assert!(parse_client_data("{not json").is_err());
        assert!(parse_client_data(r#"{"type":"webauthn.get"}"#).is_err());
    }
}
