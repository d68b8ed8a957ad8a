//! Short-lived access tokens: JWTs (RFC 7519, JWS compact serialization per
//! RFC 7515) stating that one worker's device proved presence from one
//! address, checkable offline by gateways — by `tether gateway verify-token`
//! and by stock JWT verifiers such as Envoy's `jwt_authn` with the JWKS.
//!
//! Header: `{"alg":"EdDSA"|"ES256","kid":"<key id>"}` (no `typ`: optional, and
//! every byte counts — OpenVPN passes a password of at most 511 bytes). The key id
//! is the first 8 bytes of SHA-256 of the public key (raw 32 bytes for
//! Ed25519, the 65-byte uncompressed point for P-256) as 16 lowercase hex
//! digits, so a key cannot be published under another key's id.
//!
//! Claims, exactly these: `iss` the server's issuer, `sub` the worker's
//! external id, `aud` the tenant id (Tether's tenant claim: a stock verifier
//! configured with its tenant as audience refuses other tenants' tokens),
//! `iat`/`exp` seconds since the epoch, `jti` the token id, and Tether's own
//! `dev` device id, `cred` credential id and `ip` canonical source address.
//! Unknown or missing claims are refused.
//!
//! The JWS itself is `jsonwebtoken`'s (ring underneath). This module decides
//! which key and which algorithm: the key is found by `kid` in the verifier's
//! [`KeySet`] and the algorithm comes from that key, never from the token, so
//! `none`, HMAC and algorithm confusion have nothing to work with.
//!
//! Signing keys are server-wide, so a signature alone does not say whose
//! gateway may admit the bearer: every verification goes through a
//! [`KeySet`], which names the one tenant (the audience) whose tokens it
//! accepts, and a token of any other tenant is [`AccessTokenError::WrongTenant`].
//!
//! Everything here is pure: the caller passes the clock.

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[path = "access_token_keys.rs"]
mod keys;
pub use keys::{
    DEFAULT_ISSUER, Jwk, KeyAlgorithm, KeySet, VerifyingKey, generate_pkcs8, jwks_json, key_id_for, parse_jwks,
    parse_key_set, pkcs8_to_pem,
};

/// Longest token accepted (bytes); longer input is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest identifier a token may carry (bytes), as everywhere in the API.
pub const MAX_FIELD_LEN: usize = 256;
/// Longest lifetime (`exp - iat`) a token may claim; the service's maximum TTL.
pub const MAX_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// How far in the future `iat` may lie: the verifier's clock may lag the issuer's.
pub const CLOCK_SKEW_MS: i64 = 60 * 1000;
/// How long after `exp` a token is still accepted: JWT times are whole
/// seconds, and a verifier's clock may run a little ahead of the issuer's.
pub const EXPIRY_LEEWAY_MS: i64 = 5 * 1000;

/// What a token states. `key_id` is the signing key's id (from the token).
/// Times are Unix milliseconds, always whole seconds (JWT NumericDate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessTokenClaims {
    pub issuer: String,
    pub tenant_id: String,
    pub worker_external_id: String,
    pub device_id: String,
    pub credential_id: String,
    /// Canonical form (IPv4-mapped IPv6 folded to IPv4).
    pub source_ip: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub token_id: String,
    pub key_id: String,
}

/// Why a token was refused, or a key unusable. `code()` is a stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("the token is {len} bytes; at most {MAX_TOKEN_LEN} are accepted")]
    TooLong { len: usize },
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token was signed by key {0:?}, which is not among the accepted keys")]
    UnknownKeyId(String),
    #[error("the token names algorithm {token_alg}, but key {key_id:?} is an {key_alg} key")]
    WrongAlgorithm { key_id: String, token_alg: String, key_alg: &'static str },
    #[error("the token's signature does not verify under key {0:?}: forged or altered")]
    BadSignature(String),
    #[error("the token expired at {expires_at_ms} (now {now_ms})")]
    Expired { expires_at_ms: i64, now_ms: i64 },
    #[error("the token is issued at {issued_at_ms}, after now ({now_ms}) plus the allowed clock skew")]
    NotYetValid { issued_at_ms: i64, now_ms: i64 },
    #[error("the token claims a lifetime of {0} ms; at most {MAX_LIFETIME_MS} ms is allowed")]
    LifetimeTooLong(i64),
    #[error("the token was issued to {token_ip}, but it is presented from {presented_ip}")]
    WrongSourceIp { token_ip: String, presented_ip: String },
    #[error("the token was issued in tenant {token_tenant:?}; this verifier accepts only tenant {expected:?}")]
    WrongTenant { token_tenant: String, expected: String },
    #[error("the token was issued by {token_issuer:?}; this verifier accepts only issuer {expected:?}")]
    WrongIssuer { token_issuer: String, expected: String },
    #[error("the presented source address {0:?} is not an IP address")]
    InvalidSourceIp(String),
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    #[error("unusable key: {0}")]
    InvalidKey(String),
}

impl AccessTokenError {
    /// Stable snake_case name for logs, exit messages and deny reasons.
    pub fn code(&self) -> &'static str {
        match self {
            AccessTokenError::TooLong { .. } => "too_long",
            AccessTokenError::Malformed(_) => "malformed",
            AccessTokenError::UnknownKeyId(_) => "unknown_key_id",
            AccessTokenError::WrongAlgorithm { .. } => "wrong_algorithm",
            AccessTokenError::BadSignature(_) => "bad_signature",
            AccessTokenError::Expired { .. } => "expired",
            AccessTokenError::NotYetValid { .. } => "not_yet_valid",
            AccessTokenError::LifetimeTooLong(_) => "lifetime_too_long",
            AccessTokenError::WrongSourceIp { .. } => "wrong_source_ip",
            AccessTokenError::WrongTenant { .. } => "wrong_tenant",
            AccessTokenError::WrongIssuer { .. } => "wrong_issuer",
            AccessTokenError::InvalidSourceIp(_) => "invalid_source_ip",
            AccessTokenError::InvalidClaims(_) => "invalid_claims",
            AccessTokenError::InvalidKey(_) => "invalid_key",
        }
    }
}

/// Parses an address, folding IPv4-mapped IPv6 to IPv4 and dropping brackets.
pub fn canonical_ip(text: &str) -> Option<IpAddr> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The JWT claims set as it is on the wire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    dev: String,
    cred: String,
    ip: String,
}

/// Holds the active private key (Ed25519 or ECDSA P-256).
pub struct AccessTokenSigner {
    encoding: EncodingKey,
    key: VerifyingKey,
}

impl std::fmt::Debug for AccessTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessTokenSigner({} {})", self.key.algorithm.jws_name(), self.key.key_id)
    }
}

impl AccessTokenSigner {
    /// A PKCS#8 private key, DER or PEM (`-----BEGIN PRIVATE KEY-----`):
    /// Ed25519 (PKCS#8 v1 as OpenSSL writes it, or v2) signs EdDSA tokens,
    /// ECDSA P-256 signs ES256 tokens.
    pub fn from_pkcs8(material: &[u8]) -> Result<AccessTokenSigner, AccessTokenError> {
        let der = keys::pem_or_der(material)?;
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            let key = VerifyingKey::new(KeyAlgorithm::EdDsa, pair.public_key().as_ref())?;
            return Ok(AccessTokenSigner { encoding: EncodingKey::from_ed_der(&der), key });
        }
        let rng = ring::rand::SystemRandom::new();
        match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng) {
            Ok(pair) => {
                let key = VerifyingKey::new(KeyAlgorithm::Es256, pair.public_key().as_ref())?;
                Ok(AccessTokenSigner { encoding: EncodingKey::from_ec_der(&der), key })
            }
            Err(e) => {
                Err(AccessTokenError::InvalidKey(format!("not a PKCS#8 Ed25519 or ECDSA P-256 private key ({e})")))
            }
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key.key_id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Signs `claims` (its `key_id` is ignored: the signer's id is used).
    /// Times must be whole seconds, as a JWT carries them.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, AccessTokenError> {
        let invalid = |why: String| Err(AccessTokenError::InvalidClaims(why));
        for (name, value) in [
            ("issuer", &claims.issuer),
            ("tenant_id", &claims.tenant_id),
            ("worker_external_id", &claims.worker_external_id),
            ("device_id", &claims.device_id),
            ("credential_id", &claims.credential_id),
            ("token_id", &claims.token_id),
        ] {
            if value.is_empty() || value.len() > MAX_FIELD_LEN {
                return invalid(format!("{name} must be 1 to {MAX_FIELD_LEN} bytes"));
            }
        }
        let Some(ip) = canonical_ip(&claims.source_ip) else {
            return invalid(format!("source_ip {:?} is not an IP address", claims.source_ip));
        };
        let lifetime = claims.expires_at_ms.saturating_sub(claims.issued_at_ms);
        if claims.issued_at_ms < 0 || lifetime <= 0 || lifetime > MAX_LIFETIME_MS {
            return invalid(format!("the lifetime must be 1 to {MAX_LIFETIME_MS} ms after a non-negative issue time"));
        }
        if claims.issued_at_ms % 1000 != 0 || claims.expires_at_ms % 1000 != 0 {
            return invalid("issue and expiry times must be whole seconds (JWT NumericDate)".into());
        }
        let payload = Payload {
            iss: claims.issuer.clone(),
            sub: claims.worker_external_id.clone(),
            aud: claims.tenant_id.clone(),
            iat: claims.issued_at_ms / 1000,
            exp: claims.expires_at_ms / 1000,
            jti: claims.token_id.clone(),
            dev: claims.device_id.clone(),
            cred: claims.credential_id.clone(),
            ip: ip.to_string(),
        };
        let mut header = Header::new(self.key.algorithm.jws());
        header.typ = None;
        header.kid = Some(self.key.key_id.clone());
        let token = jsonwebtoken::encode(&header, &payload, &self.encoding)
            .map_err(|e| AccessTokenError::InvalidKey(format!("signing failed: {e}")))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AccessTokenError::TooLong { len: token.len() });
        }
        Ok(token)
    }
}

fn malformed(why: impl Into<String>) -> AccessTokenError {
    AccessTokenError::Malformed(why.into())
}

/// The key id a token's header names, after only structural checks (for logs
/// and routing; never a substitute for [`verify`]).
pub fn peek_key_id(token: &str) -> Result<String, AccessTokenError> {
    check_shape(token)?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| malformed(format!("header: {e}")))?;
    header.kid.ok_or_else(|| malformed("the header names no key (\"kid\")"))
}

fn check_shape(token: &str) -> Result<(), AccessTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AccessTokenError::TooLong { len: token.len() });
    }
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(malformed("it contains characters outside base64url and '.'"));
    }
    if token.split('.').count() != 3 || token.split('.').any(str::is_empty) {
        return Err(malformed("expected a JWT: three non-empty dot-separated parts (header.claims.signature)"));
    }
    Ok(())
}

/// Verifies `token` against `keys` at `now_ms`: structure, key id, the
/// algorithm the key is pinned to, signature, issuer, that it was issued in
/// the key set's tenant (the audience), lifetime, and — when
/// `presented_ip` is given — that it is presented from the address it was
/// issued to.
pub fn verify(
    token: &str,
    keys: &KeySet,
    now_ms: i64,
    presented_ip: Option<&str>,
) -> Result<AccessTokenClaims, AccessTokenError> {
    let key_id = peek_key_id(token)?;
    let key = keys.find(&key_id).ok_or_else(|| AccessTokenError::UnknownKeyId(key_id.clone()))?;
    // The header is parsed again inside decode; this check only gives a clearer error.
    let header = jsonwebtoken::decode_header(token).map_err(|e| malformed(format!("header: {e}")))?;
    if header.alg != key.algorithm.jws() {
        return Err(AccessTokenError::WrongAlgorithm {
            key_id,
            token_alg: format!("{:?}", header.alg),
            key_alg: key.algorithm.jws_name(),
        });
    }
    let mut validation = Validation::new(key.algorithm.jws());
    // Times, audience and issuer are checked below against the caller's
    // clock and key set; the crate would read the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let decoding = match key.algorithm {
        KeyAlgorithm::EdDsa => DecodingKey::from_ed_der(&key.public_key),
        KeyAlgorithm::Es256 => DecodingKey::from_ec_der(&key.public_key),
    };
    // Signature first: only signed bytes reach the claims parser.
    let payload: Payload = match jsonwebtoken::decode(token, &decoding, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => AccessTokenError::BadSignature(key_id),
                ErrorKind::InvalidAlgorithm => AccessTokenError::WrongAlgorithm {
                    key_id,
                    token_alg: format!("{:?}", header.alg),
                    key_alg: key.algorithm.jws_name(),
                },
                _ => malformed(format!("{e}")),
            });
        }
    };
    check_claims(payload, keys, key_id, now_ms, presented_ip)
}

fn check_claims(
    payload: Payload,
    keys: &KeySet,
    key_id: String,
    now_ms: i64,
    presented_ip: Option<&str>,
) -> Result<AccessTokenClaims, AccessTokenError> {
    if payload.iss != keys.issuer() {
        return Err(AccessTokenError::WrongIssuer { token_issuer: payload.iss, expected: keys.issuer().into() });
    }
    if payload.aud != keys.tenant_id() {
        return Err(AccessTokenError::WrongTenant {
            token_tenant: payload.aud,
            expected: keys.tenant_id().to_string(),
        });
    }
    let (iat, exp) = (payload.iat.saturating_mul(1000), payload.exp.saturating_mul(1000));
    let lifetime = exp.saturating_sub(iat);
    if lifetime <= 0 || iat < 0 {
        return Err(malformed("it expires before it is issued"));
    }
    if lifetime > MAX_LIFETIME_MS {
        return Err(AccessTokenError::LifetimeTooLong(lifetime));
    }
    if iat > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(AccessTokenError::NotYetValid { issued_at_ms: iat, now_ms });
    }
    if now_ms >= exp.saturating_add(EXPIRY_LEEWAY_MS) {
        return Err(AccessTokenError::Expired { expires_at_ms: exp, now_ms });
    }
    let token_ip = canonical_ip(&payload.ip).ok_or_else(|| malformed("its source address is not an IP address"))?;
    if let Some(presented) = presented_ip {
        let presented_ip =
            canonical_ip(presented).ok_or_else(|| AccessTokenError::InvalidSourceIp(presented.into()))?;
        if presented_ip != token_ip {
            return Err(AccessTokenError::WrongSourceIp {
                token_ip: token_ip.to_string(),
                presented_ip: presented_ip.to_string(),
            });
        }
    }
    Ok(AccessTokenClaims {
        issuer: payload.iss,
        tenant_id: payload.aud,
        worker_external_id: payload.sub,
        device_id: payload.dev,
        credential_id: payload.cred,
        source_ip: token_ip.to_string(),
        issued_at_ms: iat,
        expires_at_ms: exp,
        token_id: payload.jti,
        key_id,
    })
}

#[cfg(test)]
#[path = "access_token_tests.rs"]
mod tests;
