//! The API-key pepper: the server-side secret in every API-key hash, and the
//! verify-only previous peppers kept while one is rotated.
//!
//! A key's stored hash is HMAC-SHA256(pepper, salt ‖ secret). The pepper
//! lives in a file or the environment, never in the database. Each pepper has
//! an id, the first 8 hex digits of SHA-256 of its material, stored beside
//! every hash it made (`api_keys.pepper_id`), so operators can see which keys
//! still depend on a previous pepper. A key that verifies under a previous
//! pepper is re-hashed under the current one (`rehash_if_needed`), so once
//! every live key has been used the previous pepper can be dropped.

use crate::store::Store;
use crate::store::keys::{self, StoredHash};
use crate::util::{random_bytes, sha256};
use ring::hmac;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

pub(crate) const HMAC_SCHEME: &str = "hmac-sha256-v1";
/// Unsalted, unpeppered SHA-256: keys made before hashes were hardened.
pub(crate) const LEGACY_SCHEME: &str = "sha256";

/// How the verify-only peppers are configured, for error messages.
pub const PREVIOUS_SETTING: &str =
    "--api-key-pepper-previous-file (TETHER_API_KEY_PEPPER_PREVIOUS_FILE, api_key_pepper_previous_file)";

#[derive(Clone)]
struct Material {
    key: hmac::Key,
    id: String,
}

impl Material {
    fn new(material: &[u8]) -> Result<Material, String> {
        let trimmed = material.trim_ascii();
        if trimmed.len() < 32 {
            return Err(format!("the API-key pepper must be at least 32 bytes; got {}", trimmed.len()));
        }
        Ok(Material::from_trimmed(trimmed))
    }

    fn from_trimmed(trimmed: &[u8]) -> Material {
        Material { key: hmac::Key::new(hmac::HMAC_SHA256, trimmed), id: pepper_id(trimmed) }
    }

    fn hash(&self, salt: &[u8], secret: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(salt);
        context.update(secret.as_bytes());
        context.sign().as_ref().to_vec()
    }
}

/// The first 8 hex digits of SHA-256 of the pepper (surrounding whitespace
/// removed): `tr -d '[:space:]' < FILE | sha256sum | cut -c1-8` for a pepper
/// without inner whitespace.
fn pepper_id(trimmed: &[u8]) -> String {
    hex::encode(&sha256(trimmed)[..4])
}

/// The current pepper, which makes every new hash, and the previous ones,
/// which only verify.
#[derive(Clone)]
pub struct Pepper {
    current: Material,
    previous: Vec<Material>,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pepper({}, {} previous)", self.current.id, self.previous.len())
    }
}

/// Which secret a presented one matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The current pepper's hash.
    Current,
    /// A previous pepper's hash, by pepper id.
    Previous(String),
    /// The unpeppered legacy hash.
    Legacy,
}

impl Pepper {
    /// At least 32 bytes of secret material (surrounding whitespace ignored).
    pub fn from_bytes(material: &[u8]) -> Result<Pepper, String> {
        Ok(Pepper { current: Material::new(material)?, previous: Vec::new() })
    }

    /// Reads the pepper file, creating it (mode 0600, 32 random bytes as hex)
    /// when `create` is set and it does not exist yet.
    pub fn from_file(path: &Path, create: bool) -> Result<Pepper, String> {
        if create && !path.exists() {
            write_new_secret_file(path, hex::encode(random_bytes::<32>()).as_bytes())
                .map_err(|e| format!("cannot create the API-key pepper file {}: {e}", path.display()))?;
        }
        Ok(Pepper { current: read_material(path)?, previous: Vec::new() })
    }

    /// A pepper that lives only in this process (in-memory databases, the demo).
    pub fn ephemeral() -> Pepper {
        Pepper { current: Material::from_trimmed(&random_bytes::<32>()), previous: Vec::new() }
    }

    /// The pepper for `database_url`, from (in order) `TETHER_API_KEY_PEPPER`,
    /// the given file (which must exist), or for a SQLite file the file beside
    /// it, `<database>.pepper`, created on first use. A PostgreSQL deployment
    /// must configure one explicitly: every replica needs the same pepper.
    pub fn for_database(explicit_file: Option<&Path>, database_url: &str) -> Result<Pepper, String> {
        if let Ok(value) = std::env::var("TETHER_API_KEY_PEPPER")
            && !value.is_empty()
        {
            return Pepper::from_bytes(value.as_bytes()).map_err(|e| format!("TETHER_API_KEY_PEPPER: {e}"));
        }
        if let Some(path) = explicit_file {
            return Pepper::from_file(path, false);
        }
        let Some(rest) = database_url.strip_prefix("sqlite:") else {
            return Err("no API-key pepper configured: set --api-key-pepper-file (TETHER_API_KEY_PEPPER_FILE) \
                        or TETHER_API_KEY_PEPPER, the same on every replica"
                .into());
        };
        let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Ok(Pepper::ephemeral());
        }
        Pepper::from_file(Path::new(&format!("{path}.pepper")), true)
    }

    /// Adds verify-only previous peppers, each read from a file that must
    /// exist and hold at least 32 bytes. One equal to the current pepper, or
    /// named twice, counts once.
    pub fn with_previous_files(mut self, files: &[PathBuf]) -> Result<Pepper, String> {
        for path in files {
            let material = read_material(path).map_err(|e| format!("{PREVIOUS_SETTING}: {e}"))?;
            if material.id != self.current.id && !self.previous.iter().any(|p| p.id == material.id) {
                self.previous.push(material);
            }
        }
        Ok(self)
    }

    /// The id of the pepper new hashes are made with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of the verify-only peppers, in the configured order.
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|p| p.id.as_str()).collect()
    }

    /// A new stored hash of `secret` under the current pepper, with a new salt.
    pub fn hash_new(&self, secret: &str) -> StoredHash {
        let salt = random_bytes::<16>();
        StoredHash {
            secret_hash: self.current.hash(&salt, secret),
            hash_scheme: HMAC_SCHEME.into(),
            salt: hex::encode(salt),
            pepper_id: Some(self.current.id.clone()),
        }
    }

    /// Checks `secret` against a key's stored hash: under the current pepper,
    /// then each previous one. Every pepper is tried and every comparison is
    /// constant-time, so a wrong secret costs the same whichever is stored.
    pub fn verify(&self, key: &keys::ApiKey, secret: &str) -> Option<Verified> {
        match key.hash_scheme.as_str() {
            HMAC_SCHEME => {
                let salt = hex::decode(&key.salt).ok()?;
                let mut found = None;
                for (index, material) in std::iter::once(&self.current).chain(&self.previous).enumerate() {
                    let matches = bool::from(material.hash(&salt, secret).ct_eq(&key.secret_hash));
                    if matches && found.is_none() {
                        found = Some(index);
                    }
                }
                match found? {
                    0 => Some(Verified::Current),
                    n => Some(Verified::Previous(self.previous[n - 1].id.clone())),
                }
            }
            LEGACY_SCHEME => bool::from(sha256(secret.as_bytes()).ct_eq(&key.secret_hash)).then_some(Verified::Legacy),
            _ => None,
        }
    }
}

/// After `secret` verified as `verified` for `key`: a key under a previous
/// pepper is re-hashed under the current one (new salt), and a key hashed
/// before pepper ids were recorded gets the current id. The update is
/// conditional on the hash read, so replicas racing on one key do no harm:
/// the first wins and the others change nothing. A failed write only delays
/// the re-hash to the key's next use.
pub async fn rehash_if_needed(store: &Store, pepper: &Pepper, key: &keys::ApiKey, secret: &str, verified: &Verified) {
    let outcome = match verified {
        Verified::Previous(old) => {
            let done = keys::rehash(store, &key.id, &key.secret_hash, &pepper.hash_new(secret)).await;
            if let Ok(true) = done {
                tracing::info!(
                    key_id = %key.id,
                    tenant_id = %key.tenant_id,
                    from_pepper = %old,
                    to_pepper = %pepper.current_id(),
                    "API key re-hashed under the current pepper"
                );
            }
            done
        }
        Verified::Current if key.pepper_id.as_deref() != Some(pepper.current_id()) => {
            let same = StoredHash {
                secret_hash: key.secret_hash.clone(),
                hash_scheme: key.hash_scheme.clone(),
                salt: key.salt.clone(),
                pepper_id: Some(pepper.current_id().to_string()),
            };
            keys::rehash(store, &key.id, &key.secret_hash, &same).await
        }
        Verified::Current | Verified::Legacy => return,
    };
    if let Err(e) = outcome {
        tracing::warn!(key_id = %key.id, error = %e, "cannot record the API key's pepper; retried at its next use");
    }
}

/// Logs, at start, how many live keys still depend on a previous pepper (or
/// on one not recorded), so an operator knows when it can be removed.
pub async fn log_dependents(store: &Store, pepper: &Pepper, now_ms: i64) {
    let counts = match keys::live_counts_by_pepper(store, HMAC_SCHEME, now_ms).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::warn!(
                current = %pepper.current_id(),
                previous = %pepper.previous_ids().join(","),
                error = %e,
                "API-key pepper loaded; cannot count the API keys that depend on a previous pepper"
            );
            return;
        }
    };
    let count_of = |id: Option<&str>| counts.iter().filter(|(p, _)| p.as_deref() == id).map(|(_, n)| n).sum::<i64>();
    let unknown = count_of(None);
    let previous: Vec<String> =
        pepper.previous_ids().into_iter().map(|id| format!("{id}={}", count_of(Some(id)))).collect();
    let on_previous: i64 = pepper.previous_ids().into_iter().map(|id| count_of(Some(id))).sum();
    let on_current = count_of(Some(pepper.current_id()));
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    tracing::info!(
        current = %pepper.current_id(),
        previous = %previous.join(","),
        live_keys_on_current = on_current,
        live_keys_on_previous = on_previous,
        // Hashed before pepper ids were recorded and not used since: under some earlier pepper.
        live_keys_unrecorded = unknown,
        // Hashed under a pepper no longer configured: they cannot authenticate.
        live_keys_on_other = total - on_current - on_previous - unknown,
        "API-key pepper loaded"
    );
    if !pepper.previous.is_empty() && on_previous == 0 && unknown == 0 {
        tracing::info!("no live API key depends on a previous pepper: it can be removed");
    }
}

fn read_material(path: &Path) -> Result<Material, String> {
    let material =
        std::fs::read(path).map_err(|e| format!("cannot read the API-key pepper file {}: {e}", path.display()))?;
    Material::new(&material).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "pepper A, thirty-two bytes or more!";
    const B: &str = "pepper B, thirty-two bytes or more!";

    fn key_with(hash: StoredHash) -> keys::ApiKey {
        keys::ApiKey {
            id: "key_1".into(),
            tenant_id: "ten_1".into(),
            name: "k".into(),
            role: "admin".into(),
            secret_hash: hash.secret_hash,
            hash_scheme: hash.hash_scheme,
            salt: hash.salt,
            pepper_id: hash.pepper_id,
            expires_at_ms: None,
            created_at_ms: 0,
            last_used_at_ms: None,
            revoked_at_ms: None,
        }
    }

    fn previous_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn the_id_is_the_sha256_prefix_of_the_trimmed_material() {
        let pepper = Pepper::from_bytes(format!("  {A}\n").as_bytes()).unwrap();
        assert_eq!(pepper.current_id(), &hex::encode(sha256(A.as_bytes()))[..8]);
        assert_ne!(pepper.current_id(), Pepper::from_bytes(B.as_bytes()).unwrap().current_id());
    }

    #[test]
    fn a_hash_verifies_under_the_pepper_that_made_it_current_or_previous() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pepper::from_bytes(A.as_bytes()).unwrap();
        let key = key_with(a.hash_new("secret"));
        assert_eq!(key.pepper_id.as_deref(), Some(a.current_id()));
        assert_eq!(a.verify(&key, "secret"), Some(Verified::Current));
        assert_eq!(a.verify(&key, "secreT"), None);

        let b_only = Pepper::from_bytes(B.as_bytes()).unwrap();
        assert_eq!(b_only.verify(&key, "secret"), None);
        let b_then_a = b_only.with_previous_files(&[previous_file(dir.path(), "a", A)]).unwrap();
        assert_eq!(b_then_a.previous_ids(), vec![a.current_id()]);
        assert_eq!(b_then_a.verify(&key, "secret"), Some(Verified::Previous(a.current_id().to_string())));
        assert_eq!(b_then_a.verify(&key, "wrong"), None);

        let rehashed = key_with(b_then_a.hash_new("secret"));
        assert_eq!(b_then_a.verify(&rehashed, "secret"), Some(Verified::Current));
        assert_eq!(Pepper::from_bytes(B.as_bytes()).unwrap().verify(&rehashed, "secret"), Some(Verified::Current));
    }

    #[test]
    fn previous_files_are_checked_like_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = || Pepper::from_bytes(B.as_bytes()).unwrap();
        let missing = b().with_previous_files(&[dir.path().join("missing")]).unwrap_err();
        assert!(missing.contains("--api-key-pepper-previous-file") && missing.contains("cannot read"), "{missing}");
        let short = b().with_previous_files(&[previous_file(dir.path(), "short", "too short\n")]).unwrap_err();
        assert!(short.contains("api_key_pepper_previous_file") && short.contains("at least 32 bytes"), "{short}");
        // The current pepper, or one named twice, counts once.
        let files = [previous_file(dir.path(), "b", B), previous_file(dir.path(), "a", A), dir.path().join("a")];
        assert_eq!(b().with_previous_files(&files).unwrap().previous_ids().len(), 1);
    }

    #[test]
    fn legacy_and_unknown_schemes() {
        let pepper = Pepper::from_bytes(A.as_bytes()).unwrap();
        let legacy = StoredHash {
            secret_hash: sha256(b"secret"),
            hash_scheme: LEGACY_SCHEME.into(),
            salt: String::new(),
            pepper_id: None,
        };
        assert_eq!(pepper.verify(&key_with(legacy.clone()), "secret"), Some(Verified::Legacy));
        assert_eq!(pepper.verify(&key_with(legacy.clone()), "other"), None);
        let unknown = StoredHash { hash_scheme: "rot13".into(), ..legacy };
        assert_eq!(pepper.verify(&key_with(unknown), "secret"), None);
    }
}
