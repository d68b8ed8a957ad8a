//! Short-lived access tokens: Ed25519-signed statements that one worker's
//! device proved presence from one address, checkable offline by gateways.
//!
//! Format (ASCII, at most [`MAX_TOKEN_LEN`] bytes):
//!
//! ```text
//! tt1.<key id>.<base64url(payload JSON)>.<base64url(Ed25519 signature)>
//! ```
//!
//! The signature covers the ASCII bytes `tt1.<key id>.<payload>` (everything
//! before the last dot), so the version and key id are bound too. The key id
//! is the first 8 bytes of SHA-256 of the raw 32-byte public key, as 16
//! lowercase hex digits: a verifier can recompute it and a key cannot be
//! published under another key's id. base64url is unpadded and canonical.
//! The payload is a JSON object with exactly these members:
//! `ten` tenant id, `wrk` worker external id, `dev` device id, `cred`
//! credential id, `ip` canonical source address, `iat`/`exp` Unix ms, `jti`
//! token id. Unknown members, missing members and any trailing data are
//! rejected. The signature is checked before the payload is parsed.
//!
//! Signing keys are server-wide, so a signature alone does not say whose
//! gateway may admit the bearer: every verification goes through a
//! [`KeySet`], which names the one tenant whose tokens it accepts, and a
//! token of any other tenant is [`AccessTokenError::WrongTenant`].
//!
//! Everything here is pure: the caller passes the clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The version prefix of every token.
pub const PREFIX: &str = "tt1";
/// Longest token accepted (bytes); longer input is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest identifier a token may carry (bytes), as everywhere in the API.
pub const MAX_FIELD_LEN: usize = 256;
/// Longest lifetime (`exp - iat`) a token may claim; the service's maximum TTL.
pub const MAX_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// How far in the future `iat` may lie: the verifier's clock may lag the issuer's.
pub const CLOCK_SKEW_MS: i64 = 60 * 1000;
const KEY_ID_LEN: usize = 16;

/// What a token states. `key_id` is the signing key's id (from the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessTokenClaims {
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

/// A public key a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub key_id: String,
    pub public_key: [u8; 32],
}

impl VerifyingKey {
    /// The key with its derived id.
    pub fn new(public_key: [u8; 32]) -> VerifyingKey {
        VerifyingKey { key_id: key_id_for(&public_key), public_key }
    }

    /// A published (id, base64url or base64 key) pair; the id must match the key.
    pub fn from_published(key_id: &str, public_key_b64: &str) -> Result<VerifyingKey, AccessTokenError> {
        let text = public_key_b64.trim().trim_end_matches('=');
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| AccessTokenError::InvalidKey(format!("public key of {key_id:?} is not base64")))?;
        let public_key: [u8; 32] = raw
            .try_into()
            .map_err(|_| AccessTokenError::InvalidKey(format!("public key of {key_id:?} is not 32 bytes (Ed25519)")))?;
        let key = VerifyingKey::new(public_key);
        if key.key_id != key_id.trim() {
            return Err(AccessTokenError::InvalidKey(format!(
                "key id {key_id:?} does not match its public key (expected {})",
                key.key_id
            )));
        }
        Ok(key)
    }

    /// The public key as unpadded base64url.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key)
    }
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
            AccessTokenError::BadSignature(_) => "bad_signature",
            AccessTokenError::Expired { .. } => "expired",
            AccessTokenError::NotYetValid { .. } => "not_yet_valid",
            AccessTokenError::LifetimeTooLong(_) => "lifetime_too_long",
            AccessTokenError::WrongSourceIp { .. } => "wrong_source_ip",
            AccessTokenError::WrongTenant { .. } => "wrong_tenant",
            AccessTokenError::InvalidSourceIp(_) => "invalid_source_ip",
            AccessTokenError::InvalidClaims(_) => "invalid_claims",
            AccessTokenError::InvalidKey(_) => "invalid_key",
        }
    }
}

/// The id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id_for(public_key: &[u8; 32]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..KEY_ID_LEN / 2])
}

/// Parses an address, folding IPv4-mapped IPv6 to IPv4 and dropping brackets.
pub fn canonical_ip(text: &str) -> Option<IpAddr> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The JSON payload; short member names keep tokens small enough for headers.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    ten: String,
    wrk: String,
    dev: String,
    cred: String,
    ip: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Holds the active Ed25519 private key.
pub struct AccessTokenSigner {
    pair: Ed25519KeyPair,
    key: VerifyingKey,
}

impl std::fmt::Debug for AccessTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessTokenSigner({})", self.key.key_id)
    }
}

impl AccessTokenSigner {
    /// A PKCS#8 Ed25519 private key, DER or PEM (`-----BEGIN PRIVATE KEY-----`).
    /// Both PKCS#8 v1 (OpenSSL `genpkey -algorithm ed25519`) and v2 are accepted.
    pub fn from_pkcs8(material: &[u8]) -> Result<AccessTokenSigner, AccessTokenError> {
        let der = pem_or_der(material)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| AccessTokenError::InvalidKey(format!("not a PKCS#8 Ed25519 private key ({e})")))?;
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AccessTokenError::InvalidKey("the public key is not 32 bytes".into()))?;
        Ok(AccessTokenSigner { pair, key: VerifyingKey::new(public_key) })
    }

    pub fn key_id(&self) -> &str {
        &self.key.key_id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Signs `claims` (its `key_id` is ignored: the signer's id is used).
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, AccessTokenError> {
        let invalid = |why: String| Err(AccessTokenError::InvalidClaims(why));
        for (name, value) in [
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
        let payload = Payload {
            ten: claims.tenant_id.clone(),
            wrk: claims.worker_external_id.clone(),
            dev: claims.device_id.clone(),
            cred: claims.credential_id.clone(),
            ip: ip.to_string(),
            iat: claims.issued_at_ms,
            exp: claims.expires_at_ms,
            jti: claims.token_id.clone(),
        };
        let json = serde_json::to_vec(&payload).map_err(|e| AccessTokenError::InvalidClaims(e.to_string()))?;
        let signed = format!("{PREFIX}.{}.{}", self.key.key_id, URL_SAFE_NO_PAD.encode(json));
        let signature = self.pair.sign(signed.as_bytes());
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        if token.len() > MAX_TOKEN_LEN {
            return Err(AccessTokenError::TooLong { len: token.len() });
        }
        Ok(token)
    }
}

fn pem_or_der(material: &[u8]) -> Result<Vec<u8>, AccessTokenError> {
    let Ok(text) = std::str::from_utf8(material) else { return Ok(material.to_vec()) };
    let Some(start) = text.find("-----BEGIN PRIVATE KEY-----") else {
        return if text.trim_start().starts_with("-----BEGIN") {
            Err(AccessTokenError::InvalidKey("expected a '-----BEGIN PRIVATE KEY-----' (PKCS#8) PEM block".into()))
        } else {
            Ok(material.to_vec())
        };
    };
    let body = &text[start + "-----BEGIN PRIVATE KEY-----".len()..];
    let end = body
        .find("-----END PRIVATE KEY-----")
        .ok_or_else(|| AccessTokenError::InvalidKey("the PEM block has no END line".into()))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| AccessTokenError::InvalidKey("the PEM block is not valid base64".into()))
}

/// A fresh PKCS#8 (v2) Ed25519 private key, DER, for a new signing key (`tether gateway
/// new-token-key`). Its randomness is the operating system's.
pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
    ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| "the operating system's random number generator failed".to_string())
}

/// Writes a PKCS#8 DER key as a PEM `PRIVATE KEY` block.
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The keys a verifier accepts and the one tenant whose tokens they admit.
/// There is no way to build one without a tenant, so no verifier can forget
/// to compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    tenant_id: String,
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// `tenant_id` must be a non-empty tenant id (at most [`MAX_FIELD_LEN`] bytes).
    pub fn new(tenant_id: &str, keys: Vec<VerifyingKey>) -> Result<KeySet, AccessTokenError> {
        let tenant_id = tenant_id.trim();
        if tenant_id.is_empty() || tenant_id.len() > MAX_FIELD_LEN {
            return Err(AccessTokenError::InvalidKey(format!(
                "a key set must name the tenant whose tokens it accepts (1 to {MAX_FIELD_LEN} bytes)"
            )));
        }
        Ok(KeySet { tenant_id: tenant_id.to_string(), keys })
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }
}

/// The key id a token names, after only structural checks (for logs and
/// routing; never a substitute for [`verify`]).
pub fn peek_key_id(token: &str) -> Result<&str, AccessTokenError> {
    split(token).map(|parts| parts.1)
}

fn malformed(why: &str) -> AccessTokenError {
    AccessTokenError::Malformed(why.to_string())
}

/// (signed prefix, key id, payload b64, signature b64)
fn split(token: &str) -> Result<(&str, &str, &str, &str), AccessTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AccessTokenError::TooLong { len: token.len() });
    }
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(malformed("it contains characters outside base64url and '.'"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [version, key_id, payload, signature] = parts.as_slice() else {
        return Err(malformed("expected four dot-separated parts: tt1.<key id>.<payload>.<signature>"));
    };
    if *version != PREFIX {
        return Err(malformed("it does not start with 'tt1.'"));
    }
    if key_id.len() != KEY_ID_LEN || !key_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(malformed("the key id is not 16 lowercase hex digits"));
    }
    if payload.is_empty() || signature.is_empty() {
        return Err(malformed("the payload or signature is empty"));
    }
    let signed_len = token.len() - signature.len() - 1;
    Ok((&token[..signed_len], key_id, payload, signature))
}

/// Verifies `token` against `keys` at `now_ms`: structure, key id, signature,
/// that it was issued in the key set's tenant, lifetime, and — when
/// `presented_ip` is given — that it is presented from the address it was
/// issued to.
pub fn verify(
    token: &str,
    keys: &KeySet,
    now_ms: i64,
    presented_ip: Option<&str>,
) -> Result<AccessTokenClaims, AccessTokenError> {
    let (signed, key_id, payload_b64, signature_b64) = split(token)?;
    let key =
        keys.keys.iter().find(|k| k.key_id == key_id).ok_or_else(|| AccessTokenError::UnknownKeyId(key_id.into()))?;
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| malformed("the signature is not base64url"))?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &key.public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| AccessTokenError::BadSignature(key_id.into()))?;
    // Only signed bytes reach the JSON parser.
    let json = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| malformed("the payload is not base64url"))?;
    let payload: Payload =
        serde_json::from_slice(&json).map_err(|e| AccessTokenError::Malformed(format!("payload: {e}")))?;
    if payload.ten != keys.tenant_id {
        return Err(AccessTokenError::WrongTenant { token_tenant: payload.ten, expected: keys.tenant_id.clone() });
    }
    let lifetime = payload.exp.saturating_sub(payload.iat);
    if lifetime <= 0 {
        return Err(malformed("it expires before it is issued"));
    }
    if lifetime > MAX_LIFETIME_MS {
        return Err(AccessTokenError::LifetimeTooLong(lifetime));
    }
    if payload.iat > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(AccessTokenError::NotYetValid { issued_at_ms: payload.iat, now_ms });
    }
    if now_ms >= payload.exp {
        return Err(AccessTokenError::Expired { expires_at_ms: payload.exp, now_ms });
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
        tenant_id: payload.ten,
        worker_external_id: payload.wrk,
        device_id: payload.dev,
        credential_id: payload.cred,
        source_ip: token_ip.to_string(),
        issued_at_ms: payload.iat,
        expires_at_ms: payload.exp,
        token_id: payload.jti,
        key_id: key_id.to_string(),
    })
}

/// A published key set (`tether gateway token-keys`), as JSON:
/// `{"tenant_id": "...", "keys": [{"key_id": "...", "public_key": "<base64url>", "active": true}]}`.
/// `tenant_id` is the tenant of the API key the set was fetched with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySetJson {
    #[serde(default)]
    pub tenant_id: String,
    pub keys: Vec<PublishedKeyJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishedKeyJson {
    pub key_id: String,
    pub public_key: String,
    #[serde(default)]
    pub active: bool,
}

/// Parses a key set file; it must name its tenant, and every key's id must
/// match its public key.
pub fn parse_key_set(json: &str) -> Result<KeySet, AccessTokenError> {
    let set: KeySetJson = serde_json::from_str(json).map_err(|e| {
        AccessTokenError::InvalidKey(format!("the key set is not {{\"tenant_id\": ..., \"keys\": [...]}} JSON: {e}"))
    })?;
    if set.tenant_id.trim().is_empty() {
        // A set without a tenant would admit every tenant's tokens: refuse it rather than guess.
        return Err(AccessTokenError::InvalidKey(
            "the key set names no tenant (\"tenant_id\"), so it would admit any tenant's tokens; fetch it again \
             with `tether gateway token-keys`, which records the tenant of the key it runs with"
                .into(),
        ));
    }
    let keys = set
        .keys
        .iter()
        .map(|k| VerifyingKey::from_published(&k.key_id, &k.public_key))
        .collect::<Result<Vec<_>, _>>()?;
    KeySet::new(&set.tenant_id, keys)
}

#[cfg(test)]
#[path = "access_token_tests.rs"]
mod tests;
