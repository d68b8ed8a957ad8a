//! The access-token signing key, the previous keys that still verify, the
//! issuer and the token lifetime: read from files and flags at start, never
//! from the database.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_attestation::access_token::{
    AccessTokenError, AccessTokenSigner, KeySet, MAX_FIELD_LEN, MAX_LIFETIME_MS, VerifyingKey, jwks_json,
};
use tether_proto::v1 as pb;

pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
pub const MAX_TTL: Duration = Duration::from_millis(MAX_LIFETIME_MS as u64);

/// The signing key, the keys that still verify, the issuer and the token lifetime.
#[derive(Debug)]
pub struct TokenKeys {
    pub(super) signer: AccessTokenSigner,
    previous: Vec<VerifyingKey>,
    pub(super) issuer: String,
    pub(super) ttl_ms: i64,
}

fn read_key(path: &Path, flag: &str) -> Result<AccessTokenSigner, String> {
    let material = std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))?;
    AccessTokenSigner::from_pkcs8(&material).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl TokenKeys {
    /// Loads the active key and the previous (verify-only) keys. Previous
    /// files may hold private keys: only their public halves are kept.
    pub fn load(active: &Path, previous: &[PathBuf], issuer: &str, ttl: Duration) -> Result<TokenKeys, String> {
        let issuer = issuer.trim();
        if issuer.is_empty() || issuer.len() > MAX_FIELD_LEN {
            return Err(format!(
                "--access-token-issuer must be 1 to {MAX_FIELD_LEN} bytes, such as https://tether.example.com"
            ));
        }
        // Whole seconds: JWT times are whole seconds, so a 90.5 s TTL could not be stated.
        if ttl.subsec_nanos() != 0 {
            return Err(format!(
                "--access-token-ttl must be whole seconds (JWT times are); got {}",
                humantime::format_duration(ttl)
            ));
        }
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(format!(
                "--access-token-ttl must be between 1s and {}; got {}",
                humantime::format_duration(MAX_TTL),
                humantime::format_duration(ttl)
            ));
        }
        let signer = read_key(active, "--access-token-key")?;
        let mut keys =
            TokenKeys { signer, previous: Vec::new(), issuer: issuer.to_string(), ttl_ms: ttl.as_millis() as i64 };
        for path in previous {
            let key = read_key(path, "--access-token-previous-key")?.verifying_key().clone();
            if key.key_id != keys.signer.key_id() && !keys.previous.iter().any(|k| k.key_id == key.key_id) {
                keys.previous.push(key);
            }
        }
        Ok(keys)
    }

    /// Every key a token may be signed with, the active one first.
    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        std::iter::once(self.signer.verifying_key().clone()).chain(self.previous.iter().cloned()).collect()
    }

    /// Every key a token may be signed with, accepting only `tenant_id`'s tokens.
    pub fn key_set_for(&self, tenant_id: &str) -> Result<KeySet, AccessTokenError> {
        KeySet::new(tenant_id, &self.issuer, self.verifying_keys())
    }

    pub fn active_key_id(&self) -> &str {
        self.signer.key_id()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public JWKS document: the same for every tenant (the keys are
    /// server-wide; tenants are told apart by `aud`), served by the web listener at
    /// `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> String {
        jwks_json(&self.verifying_keys())
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The published keys, bound to the caller's tenant.
    pub fn to_proto(&self, tenant_id: &str) -> pb::GetAccessTokenKeysResponse {
        let active = self.signer.key_id();
        pb::GetAccessTokenKeysResponse {
            keys: self
                .verifying_keys()
                .iter()
                .map(|k| pb::AccessTokenKey {
                    key_id: k.key_id.clone(),
                    public_key: URL_SAFE_NO_PAD.encode(&k.public_key),
                    active: k.key_id == active,
                    algorithm: k.algorithm.jws_name().to_string(),
                })
                .collect(),
            token_ttl_ms: self.ttl_ms,
            tenant_id: tenant_id.to_string(),
            jwks_json: self.jwks_json(),
            issuer: self.issuer.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_attestation::access_token::{KeyAlgorithm, generate_pkcs8, parse_jwks};

    fn key_file(dir: &Path, name: &str, algorithm: KeyAlgorithm) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, generate_pkcs8(algorithm).unwrap()).unwrap();
        path
    }

    #[test]
    fn the_issuer_and_a_whole_second_ttl_are_required() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "a.der", KeyAlgorithm::EdDsa);
        let five = Duration::from_secs(300);
        assert!(TokenKeys::load(&key, &[], " ", five).unwrap_err().contains("--access-token-issuer"));
        let long = "i".repeat(MAX_FIELD_LEN + 1);
        assert!(TokenKeys::load(&key, &[], &long, five).unwrap_err().contains("--access-token-issuer"));
        let fractional = TokenKeys::load(&key, &[], "tether", Duration::from_millis(1500)).unwrap_err();
        assert!(fractional.contains("whole seconds"), "{fractional}");
        assert!(TokenKeys::load(&key, &[], "tether", MAX_TTL + Duration::from_secs(1)).is_err());
        assert_eq!(TokenKeys::load(&key, &[], " https://t.example ", five).unwrap().issuer(), "https://t.example");
    }

    #[test]
    fn the_published_keys_are_a_jwks_of_every_verifying_key() {
        let dir = tempfile::tempdir().unwrap();
        let active = key_file(dir.path(), "b.der", KeyAlgorithm::Es256);
        let previous = key_file(dir.path(), "a.der", KeyAlgorithm::EdDsa);
        let keys = TokenKeys::load(&active, &[previous.clone(), previous], "tether", DEFAULT_TTL).unwrap();
        let published = keys.to_proto("ten_1");
        assert_eq!((published.tenant_id.as_str(), published.issuer.as_str()), ("ten_1", "tether"));
        let jwks = parse_jwks(&published.jwks_json).unwrap();
        assert_eq!(jwks, keys.verifying_keys(), "the active key first, a repeated previous key once");
        assert_eq!(published.jwks_json, keys.jwks_json(), "the same document for every tenant");
        let listed: Vec<(&str, bool)> = published.keys.iter().map(|k| (k.algorithm.as_str(), k.active)).collect();
        assert_eq!(listed, [("ES256", true), ("EdDSA", false)]);
    }
}
