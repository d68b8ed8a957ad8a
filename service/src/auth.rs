//! API-key authentication and role checks.
//!
//! A key reads `tk.<key id>.<secret>` with a 256-bit secret. The database
//! keeps HMAC-SHA256(pepper, salt ‖ secret): a per-key random salt, and a
//! server-side pepper that lives in a file or the environment, never in the
//! database, so a stolen database alone cannot be used to test guesses.
//! Comparison is constant-time.

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::store::keys;
use crate::util::{b64url, new_id, now_ms, random_bytes, sha256};
use ring::hmac;
use std::path::Path;
use subtle::ConstantTimeEq;
use tether_proto::v1 as pb;
use tonic::metadata::MetadataMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Gateway,
    Analyst,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Gateway => "gateway",
            Role::Analyst => "analyst",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "gateway" => Some(Role::Gateway),
            "analyst" => Some(Role::Analyst),
            _ => None,
        }
    }

    pub fn from_proto(value: i32) -> Option<Role> {
        match pb::Role::try_from(value).ok()? {
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Gateway => Some(Role::Gateway),
            pb::Role::Analyst => Some(Role::Analyst),
            pb::Role::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::Gateway => pb::Role::Gateway,
            Role::Analyst => pb::Role::Analyst,
        }
    }
}

/// Who is calling: every query is scoped to `tenant_id`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub role: Role,
    /// `key:<api key id>` or `cert:<SHA-256 of the client certificate>`, as audited.
    pub principal: String,
}

const HMAC_SCHEME: &str = "hmac-sha256-v1";
const LEGACY_SCHEME: &str = "sha256";

/// The server-side secret mixed into every API-key hash.
#[derive(Clone)]
pub struct Pepper(hmac::Key);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(…)")
    }
}

impl Pepper {
    /// At least 32 bytes of secret material (surrounding whitespace ignored).
    pub fn from_bytes(material: &[u8]) -> Result<Pepper, String> {
        let trimmed = material.trim_ascii();
        if trimmed.len() < 32 {
            return Err(format!("the API-key pepper must be at least 32 bytes; got {}", trimmed.len()));
        }
        Ok(Pepper(hmac::Key::new(hmac::HMAC_SHA256, trimmed)))
    }

    /// Reads the pepper file, creating it (mode 0600, 32 random bytes as hex)
    /// when `create` is set and it does not exist yet.
    pub fn from_file(path: &Path, create: bool) -> Result<Pepper, String> {
        if create && !path.exists() {
            write_new_secret_file(path, hex::encode(random_bytes::<32>()).as_bytes())
                .map_err(|e| format!("cannot create the API-key pepper file {}: {e}", path.display()))?;
        }
        let material =
            std::fs::read(path).map_err(|e| format!("cannot read the API-key pepper file {}: {e}", path.display()))?;
        Pepper::from_bytes(&material).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A pepper that lives only in this process (in-memory databases, the demo).
    pub fn ephemeral() -> Pepper {
        Pepper(hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()))
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

    fn hash(&self, salt: &[u8], secret: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(salt);
        context.update(secret.as_bytes());
        context.sign().as_ref().to_vec()
    }
}

fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

/// A freshly minted key: the secret is returned to the caller exactly once.
pub struct MintedKey {
    pub record: keys::ApiKey,
    pub secret: String,
}

pub fn mint_key(pepper: &Pepper, tenant_id: &str, name: &str, role: Role, expires_at_ms: Option<i64>) -> MintedKey {
    let id = new_id("key");
    let secret_part = b64url(&random_bytes::<32>());
    let salt = random_bytes::<16>();
    let record = keys::ApiKey {
        id: id.clone(),
        tenant_id: tenant_id.to_string(),
        name: name.to_string(),
        role: role.as_str().to_string(),
        secret_hash: pepper.hash(&salt, &secret_part),
        hash_scheme: HMAC_SCHEME.into(),
        salt: hex::encode(salt),
        expires_at_ms,
        created_at_ms: now_ms(),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    MintedKey { record, secret: format!("tk.{id}.{secret_part}") }
}

/// Recomputes the stored form of `secret` under the key's scheme.
fn presented_hash(pepper: &Pepper, key: &keys::ApiKey, secret: &str) -> Option<Vec<u8>> {
    match key.hash_scheme.as_str() {
        HMAC_SCHEME => hex::decode(&key.salt).ok().map(|salt| pepper.hash(&salt, secret)),
        LEGACY_SCHEME => Some(sha256(secret.as_bytes())),
        _ => None,
    }
}

const BAD_KEY: &str = "the API key is not valid; pass a live key as 'authorization: Bearer <key>'";

/// Identifies the caller — by the bearer API key, or, when the request has
/// none, by the mutual-TLS client certificate — and checks that its role is
/// one of `allowed`.
pub async fn authorize<T>(app: &App, request: &tonic::Request<T>, allowed: &[Role]) -> ApiResult<Caller> {
    let metadata = request.metadata();
    if metadata.get("authorization").is_none()
        && let Some(chain) = request.peer_certs()
        && let Some(leaf) = chain.first()
    {
        let caller = certificate_caller(app, leaf.as_ref()).await?;
        return check_role(caller, allowed);
    }
    let caller = key_caller(app, metadata).await?;
    check_role(caller, allowed)
}

fn check_role(caller: Caller, allowed: &[Role]) -> ApiResult<Caller> {
    crate::telemetry::set_tenant(&caller.tenant_id);
    if allowed.contains(&caller.role) {
        return Ok(caller);
    }
    let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(ApiError::denied(format!(
        "this call needs a key with role {}; this caller's role is {}",
        names.join(" or "),
        caller.role.as_str()
    )))
}

/// The SAN URI that names a client certificate's tenant and role.
const IDENTITY_PREFIX: &str = "tether://tenant/";

/// A client certificate already verified by the TLS layer against the
/// configured client CA carries `tether://tenant/<tenant id>/role/<role>`
/// as a URI subject alternative name (SPIFFE-style).
async fn certificate_caller(app: &App, der: &[u8]) -> ApiResult<Caller> {
    let unusable = |why: &str| ApiError::Unauthenticated(format!("the client certificate cannot be used: {why}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| unusable("it does not parse"))?;
    let uri = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(IDENTITY_PREFIX) => Some(*uri),
                _ => None,
            })
        })
        .ok_or_else(|| unusable("it has no tether://tenant/<id>/role/<role> URI name"))?;
    let rest = uri.trim_start_matches(IDENTITY_PREFIX);
    let (tenant_id, role) =
        rest.split_once("/role/").ok_or_else(|| unusable("its URI name is not tether://tenant/<id>/role/<role>"))?;
    let role = Role::parse(role).ok_or_else(|| unusable("its URI name has an unknown role"))?;
    if crate::store::tenants::get(&app.store, tenant_id).await?.is_none() {
        return Err(unusable("its tenant does not exist"));
    }
    Ok(Caller { tenant_id: tenant_id.to_string(), role, principal: format!("cert:{}", hex::encode(sha256(der))) })
}

async fn key_caller(app: &App, metadata: &MetadataMap) -> ApiResult<Caller> {
    let store = &app.store;
    let header = metadata
        .get("authorization")
        .ok_or_else(|| ApiError::Unauthenticated("missing 'authorization: Bearer <API key>' metadata".into()))?;
    let value = header.to_str().map_err(|_| ApiError::Unauthenticated(BAD_KEY.into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::Unauthenticated(BAD_KEY.into()))?
        .trim();
    let mut parts = token.splitn(3, '.');
    let (Some("tk"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::Unauthenticated(BAD_KEY.into()));
    };
    let key = keys::get(store, id).await?.ok_or_else(|| ApiError::Unauthenticated(BAD_KEY.into()))?;
    let presented = presented_hash(&app.pepper, &key, secret).unwrap_or_default();
    if !bool::from(presented.ct_eq(&key.secret_hash)) || key.revoked_at_ms.is_some() {
        return Err(ApiError::Unauthenticated(BAD_KEY.into()));
    }
    let now = now_ms();
    if key.expires_at_ms.is_some_and(|t| t <= now) {
        return Err(ApiError::Unauthenticated("the API key has expired; ask an administrator for a new one".into()));
    }
    let role =
        Role::parse(&key.role).ok_or_else(|| ApiError::Unauthenticated("the API key has an unknown role".into()))?;
    // Bound the write load of the hot path: refresh at most once a minute.
    if key.last_used_at_ms.is_none_or(|t| now - t > 60_000) {
        keys::touch(store, &key.id, now).await?;
    }
    Ok(Caller { tenant_id: key.tenant_id, role, principal: format!("key:{}", key.id) })
}
