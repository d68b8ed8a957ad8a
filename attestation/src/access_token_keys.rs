//! The public side of access tokens: verifying keys, the key set a verifier
//! accepts, and their JSON Web Key forms (RFC 7517: OKP/Ed25519, EC/P-256).

use super::{AccessTokenError, MAX_FIELD_LEN};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// The issuer (`iss`) of tokens when the operator names none.
pub const DEFAULT_ISSUER: &str = "tether";
const KEY_ID_LEN: usize = 16;
/// More keys than any rotation needs; a bigger file is refused rather than scanned.
const MAX_KEYS: usize = 32;

/// The one algorithm a key verifies: a token naming another is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037), JWK `OKP`/`Ed25519`.
    EdDsa,
    /// ECDSA P-256 with SHA-256, JWK `EC`/`P-256`.
    Es256,
}

impl KeyAlgorithm {
    pub(super) fn jws(self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }

    /// The JWS `alg` name.
    pub fn jws_name(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
        }
    }
}

/// A public key a verifier accepts: raw 32 bytes (Ed25519) or the 65-byte
/// uncompressed point (P-256), with its derived id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub key_id: String,
    pub algorithm: KeyAlgorithm,
    pub public_key: Vec<u8>,
}

impl VerifyingKey {
    /// Checks the key's length (and, for P-256, that the point is on the curve).
    pub fn new(algorithm: KeyAlgorithm, public_key: &[u8]) -> Result<VerifyingKey, AccessTokenError> {
        let ok = match algorithm {
            KeyAlgorithm::EdDsa => public_key.len() == 32,
            KeyAlgorithm::Es256 => public_key.len() == 65 && p256::PublicKey::from_sec1_bytes(public_key).is_ok(),
        };
        if !ok {
            return Err(AccessTokenError::InvalidKey(format!(
                "not a valid {} public key ({} bytes)",
                algorithm.jws_name(),
                public_key.len()
            )));
        }
        Ok(VerifyingKey { key_id: key_id_for(public_key), algorithm, public_key: public_key.to_vec() })
    }

    /// The key as a JWK (RFC 7517), with `kid`, `alg` and `use`.
    pub fn to_jwk(&self) -> serde_json::Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.algorithm {
            KeyAlgorithm::EdDsa => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(&self.public_key),
                "kid": self.key_id, "alg": "EdDSA", "use": "sig",
            }),
            KeyAlgorithm::Es256 => serde_json::json!({
                "kty": "EC", "crv": "P-256",
                "x": b64(&self.public_key[1..33]), "y": b64(&self.public_key[33..65]),
                "kid": self.key_id, "alg": "ES256", "use": "sig",
            }),
        }
    }

    /// Reads a JWK this server could have published; its `kid` must match the key.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, AccessTokenError> {
        let invalid = |why: String| AccessTokenError::InvalidKey(format!("key {:?}: {why}", jwk.kid));
        let decode = |name: &str, value: &Option<String>| {
            let text = value.as_deref().ok_or_else(|| invalid(format!("has no {name:?}")))?;
            URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid(format!("{name:?} is not unpadded base64url")))
        };
        let (algorithm, raw) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => (KeyAlgorithm::EdDsa, decode("x", &jwk.x)?),
            ("EC", Some("P-256")) => {
                let (x, y) = (decode("x", &jwk.x)?, decode("y", &jwk.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(invalid("P-256 coordinates must be 32 bytes each".into()));
                }
                (KeyAlgorithm::Es256, [&[0x04][..], &x, &y].concat())
            }
            (kty, crv) => {
                return Err(invalid(format!(
                    "unsupported key type {kty:?}/{crv:?}; access tokens use OKP/Ed25519 or EC/P-256"
                )));
            }
        };
        if let Some(alg) = &jwk.alg
            && alg != algorithm.jws_name()
        {
            return Err(invalid(format!("\"alg\" {alg:?} does not fit the key type ({})", algorithm.jws_name())));
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(invalid("\"use\" is not \"sig\"".into()));
        }
        let key = VerifyingKey::new(algorithm, &raw)?;
        if key.key_id != jwk.kid.trim() {
            return Err(invalid(format!("its id does not match its public key (expected {})", key.key_id)));
        }
        Ok(key)
    }
}

/// The id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id_for(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..KEY_ID_LEN / 2])
}

/// One JWK as read from a key set; unknown members are ignored (RFC 7517 §4).
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
    pub kid: String,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
}

/// The public JWKS document (RFC 7517 §5) for `keys`: what GetAccessTokenKeys
/// returns and what the web listener is to serve at `/.well-known/jwks.json`.
pub fn jwks_json(keys: &[VerifyingKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(VerifyingKey::to_jwk).collect::<Vec<_>>() }).to_string()
}

/// The keys a verifier accepts, the issuer it expects, and the one tenant
/// whose tokens it admits. There is no way to build one without a tenant, so
/// no verifier can forget to compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    tenant_id: String,
    issuer: String,
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// `tenant_id` and `issuer` must be non-empty (at most [`MAX_FIELD_LEN`] bytes).
    pub fn new(tenant_id: &str, issuer: &str, keys: Vec<VerifyingKey>) -> Result<KeySet, AccessTokenError> {
        let (tenant_id, issuer) = (tenant_id.trim(), issuer.trim());
        if tenant_id.is_empty() || tenant_id.len() > MAX_FIELD_LEN {
            return Err(AccessTokenError::InvalidKey(format!(
                "a key set must name the tenant whose tokens it accepts (1 to {MAX_FIELD_LEN} bytes)"
            )));
        }
        if issuer.is_empty() || issuer.len() > MAX_FIELD_LEN {
            return Err(AccessTokenError::InvalidKey(format!(
                "a key set must name the issuer whose tokens it accepts (1 to {MAX_FIELD_LEN} bytes)"
            )));
        }
        if keys.len() > MAX_KEYS {
            return Err(AccessTokenError::InvalidKey(format!("a key set holds at most {MAX_KEYS} keys")));
        }
        Ok(KeySet { tenant_id: tenant_id.to_string(), issuer: issuer.to_string(), keys })
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    pub fn find(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// The key set file `tether gateway token-keys` writes: a JWKS with two
    /// more members, the tenant and the issuer a verifier must insist on.
    pub fn to_json(&self) -> String {
        let keys: Vec<_> = self.keys.iter().map(VerifyingKey::to_jwk).collect();
        let doc = serde_json::json!({ "tenant_id": self.tenant_id, "issuer": self.issuer, "keys": keys });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct KeySetFile {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    issuer: String,
    keys: Vec<Jwk>,
}

/// Parses a JWKS document's keys (no tenant or issuer: the public document).
pub fn parse_jwks(json: &str) -> Result<Vec<VerifyingKey>, AccessTokenError> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Jwk>,
    }
    let set: Jwks = serde_json::from_str(json)
        .map_err(|e| AccessTokenError::InvalidKey(format!("not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
    if set.keys.len() > MAX_KEYS {
        return Err(AccessTokenError::InvalidKey(format!("a key set holds at most {MAX_KEYS} keys")));
    }
    set.keys.iter().map(VerifyingKey::from_jwk).collect()
}

/// Parses a key set file ([`KeySet::to_json`]); it must name its tenant and
/// issuer, and every key's id must match its public key.
pub fn parse_key_set(json: &str) -> Result<KeySet, AccessTokenError> {
    let set: KeySetFile = serde_json::from_str(json).map_err(|e| {
        AccessTokenError::InvalidKey(format!(
            "the key set is not {{\"tenant_id\": ..., \"issuer\": ..., \"keys\": [...]}} JSON: {e}"
        ))
    })?;
    if set.tenant_id.trim().is_empty() || set.issuer.trim().is_empty() {
        // A set without a tenant would admit every tenant's tokens: refuse it rather than guess.
        return Err(AccessTokenError::InvalidKey(
            "the key set names no tenant (\"tenant_id\") or issuer (\"issuer\"), so it would admit any tenant's \
             tokens; fetch it again with `tether gateway token-keys`, which records both"
                .into(),
        ));
    }
    if set.keys.len() > MAX_KEYS {
        return Err(AccessTokenError::InvalidKey(format!("a key set holds at most {MAX_KEYS} keys")));
    }
    let keys = set.keys.iter().map(VerifyingKey::from_jwk).collect::<Result<Vec<_>, _>>()?;
    KeySet::new(&set.tenant_id, &set.issuer, keys)
}

pub(super) fn pem_or_der(material: &[u8]) -> Result<Vec<u8>, AccessTokenError> {
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

/// A fresh PKCS#8 private key, DER, for a new signing key (`tether gateway
/// new-token-key`). Its randomness is the operating system's.
pub fn generate_pkcs8(algorithm: KeyAlgorithm) -> Result<Vec<u8>, String> {
    let rng = ring::rand::SystemRandom::new();
    let failed = |_| "the operating system's random number generator failed".to_string();
    match algorithm {
        KeyAlgorithm::EdDsa => {
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map(|doc| doc.as_ref().to_vec()).map_err(failed)
        }
        KeyAlgorithm::Es256 => {
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map(|doc| doc.as_ref().to_vec())
                .map_err(failed)
        }
    }
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
