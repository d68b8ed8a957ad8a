//! base64url helpers. WebAuthn JSON uses unpadded base64url, but some clients and
//! libraries pad it, so decoding accepts both while encoding never pads.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Lenient about padding only; the alphabet stays strictly URL-safe.
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A value that should have been base64url could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the value is not valid base64url ({reason}); expected URL-safe base64 without padding")]
pub struct Base64Error {
    reason: String,
}

/// Decodes base64url, with or without `=` padding.
pub fn b64url_decode(input: &str) -> Result<Vec<u8>, Base64Error> {
    URL_SAFE_ANY_PADDING.decode(input).map_err(|e| Base64Error { reason: e.to_string() })
}

/// Encodes as unpadded base64url, the form WebAuthn JSON uses.
pub fn b64url_encode(input: &[u8]) -> String {
    URL_SAFE_ANY_PADDING.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_padded_and_unpadded() {
        assert_eq!(b64url_decode("YQ").ok(), Some(b"a".to_vec()));
        assert_eq!(b64url_decode("YQ==").ok(), Some(b"a".to_vec()));
        assert_eq!(b64url_encode(b"a"), "YQ");
    }

    #[test]
    fn rejects_standard_alphabet_and_garbage() {
        assert!(b64url_decode("+/+/").is_err());
        assert!(b64url_decode("!!").is_err());
    }
}
