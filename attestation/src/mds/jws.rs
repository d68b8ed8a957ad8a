//! The JWS layer of an MDS3 BLOB: header, algorithm policy, signer chain and signature.

use jsonwebtoken::{Algorithm, DecodingKey};
use time::OffsetDateTime;

use super::MdsError;
use crate::chain::validate_chain;
use crate::trust::TrustStore;
use crate::{b64url_decode, x509};

pub(super) struct Verified {
    pub payload: Vec<u8>,
    pub alg: String,
    pub anchor: String,
}

fn invalid(reason: impl Into<String>) -> MdsError {
    MdsError::Invalid(reason.into())
}

fn unusable(reason: impl Into<String>) -> MdsError {
    MdsError::Unusable(reason.into())
}

pub(super) fn verify(jws: &str, roots: &TrustStore, at: OffsetDateTime) -> Result<Verified, MdsError> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(unusable(format!(
            "the BLOB is not a JWS in compact serialisation (header.payload.signature): it has {} part(s)",
            parts.len()
        )));
    };
    let header = match jsonwebtoken::decode_header(jws) {
        Ok(header) => header,
        Err(e) => return Err(header_error(header_b64, &e)),
    };
    let alg = header.alg;
    let key_kind = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Err(invalid(format!(
                "the header alg is {alg:?}, a symmetric algorithm; an MDS BLOB must be signed with the x5c key"
            )));
        }
        Algorithm::ES256 => "P-256",
        Algorithm::ES384 => "P-384",
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "RSA",
        Algorithm::EdDSA => "Ed25519",
    };
    let x5c = header
        .x5c_der()
        .map_err(|e| invalid(format!("the header's x5c is not base64 DER ({e})")))?
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| invalid("the header carries no x5c signer chain (x5u is not fetched)"))?;
    let anchor =
        validate_chain(&x5c, roots, at).map_err(|e| invalid(format!("the signer chain is not trusted: {e}")))?;
    let leaf_der = x5c.first().ok_or_else(|| invalid("the header carries no x5c signer chain"))?;
    let leaf = x509::parse_certificate(leaf_der)
        .map_err(|e| invalid(format!("the signer certificate x5c[0] cannot be parsed: {e}")))?;
    let spki = leaf.public_key();
    let actual = x509::key_kind(spki);
    if actual != key_kind {
        return Err(invalid(format!("the header alg {alg:?} needs a {key_kind} signer key, but x5c[0] has {actual}")));
    }
    // The key bytes come from the certificate the chain check accepted, and the key type was
    // matched to alg above: the token cannot choose what kind of key verifies it.
    let key_bytes = spki.subject_public_key.data.as_ref();
    let key = match key_kind {
        "RSA" => DecodingKey::from_rsa_der(key_bytes),
        "Ed25519" => DecodingKey::from_ed_der(key_bytes),
        _ => DecodingKey::from_ec_der(key_bytes),
    };
    let message_len = header_b64.len() + 1 + payload_b64.len();
    let message = jws.get(..message_len).ok_or_else(|| unusable("the JWS cannot be split"))?;
    match jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &key, alg) {
        Ok(true) => {}
        Ok(false) => return Err(invalid(format!("the {alg:?} signature does not verify with the x5c[0] key"))),
        Err(e) => return Err(invalid(format!("the {alg:?} signature cannot be checked ({e})"))),
    }
    let payload =
        b64url_decode(payload_b64).map_err(|e| unusable(format!("the signed payload is not base64url: {e}")))?;
    Ok(Verified { payload, alg: format!("{alg:?}"), anchor })
}

/// `jsonwebtoken` refuses algorithms it does not know, `none` among them; such a header is a
/// refused BLOB, not unreadable input, so say which alg it named.
fn header_error(header_b64: &str, e: &jsonwebtoken::errors::Error) -> MdsError {
    let named = b64url_decode(header_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|json| json.get("alg").and_then(|a| a.as_str()).map(str::to_owned));
    const KNOWN: [&str; 12] =
        ["HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"];
    match named {
        Some(alg) if !KNOWN.contains(&alg.as_str()) => invalid(format!(
            "the header alg \"{alg}\" is refused; an MDS BLOB must carry an asymmetric signature (RS*, PS*, ES*, EdDSA)"
        )),
        _ => unusable(format!("the JWS header cannot be read ({e})")),
    }
}
