//! API-key authentication and role checks.
//!
//! A key reads `tk.<key id>.<secret>` with a 256-bit secret. The database
//! keeps HMAC-SHA256(pepper, salt ‖ secret): a per-key random salt, and a
//! server-side pepper that lives in a file or the environment, never in the
//! database, so a stolen database alone cannot be used to test guesses.
//! Comparison is constant-time. The pepper, its rotation and the re-hashing
//! of keys made under a previous one are in `pepper`.

use crate::domain::app::App;
use crate::domain::error::{ApiError, ApiResult};
use crate::store::keys;
use crate::util::{b64url, new_id, now_ms, random_bytes, sha256};
use tether_proto::v1 as pb;

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

pub use crate::domain::tenancy::pepper::Pepper;

/// A freshly minted key: the secret is returned to the caller exactly once.
pub struct MintedKey {
    pub record: keys::ApiKey,
    pub secret: String,
}

pub fn mint_key(pepper: &Pepper, tenant_id: &str, name: &str, role: Role, expires_at_ms: Option<i64>) -> MintedKey {
    let id = new_id("key");
    let secret_part = b64url(&random_bytes::<32>());
    let hash = pepper.hash_new(&secret_part);
    let record = keys::ApiKey {
        id: id.clone(),
        tenant_id: tenant_id.to_string(),
        name: name.to_string(),
        role: role.as_str().to_string(),
        secret_hash: hash.secret_hash,
        hash_scheme: hash.hash_scheme,
        salt: hash.salt,
        pepper_id: hash.pepper_id,
        expires_at_ms,
        created_at_ms: now_ms(),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    MintedKey { record, secret: format!("tk.{id}.{secret_part}") }
}

const BAD_KEY: &str = "the API key is not valid; pass a live key as 'authorization: Bearer <key>'";

/// Identifies the caller — by `authorization` (`Bearer <API key>`), or, when
/// that is absent, by the client certificate the TLS layer already verified
/// against the configured client CA — and checks that its role is one of
/// `allowed`. Transports hand over what they received, unparsed.
pub async fn authenticate(
    app: &App,
    authorization: Option<&[u8]>,
    client_certificate: Option<&[u8]>,
    allowed: &[Role],
) -> ApiResult<Caller> {
    let caller = match (authorization, client_certificate) {
        (None, Some(leaf)) => certificate_caller(app, leaf).await?,
        (authorization, _) => key_caller(app, authorization).await?,
    };
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

async fn key_caller(app: &App, authorization: Option<&[u8]>) -> ApiResult<Caller> {
    let store = &app.store;
    let header = authorization
        .ok_or_else(|| ApiError::Unauthenticated("missing 'authorization: Bearer <API key>' metadata".into()))?;
    let value = std::str::from_utf8(header).map_err(|_| ApiError::Unauthenticated(BAD_KEY.into()))?;
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
    let verified = app.pepper.verify(&key, secret);
    let Some(verified) = verified.filter(|_| key.revoked_at_ms.is_none()) else {
        return Err(ApiError::Unauthenticated(BAD_KEY.into()));
    };
    let now = now_ms();
    if key.expires_at_ms.is_some_and(|t| t <= now) {
        return Err(ApiError::Unauthenticated("the API key has expired; ask an administrator for a new one".into()));
    }
    let role =
        Role::parse(&key.role).ok_or_else(|| ApiError::Unauthenticated("the API key has an unknown role".into()))?;
    crate::domain::tenancy::pepper::rehash_if_needed(store, &app.pepper, &key, secret, &verified).await;
    // Bound the write load of the hot path: refresh at most once a minute.
    if key.last_used_at_ms.is_none_or(|t| now - t > 60_000) {
        keys::touch(store, &key.id, now).await?;
    }
    Ok(Caller { tenant_id: key.tenant_id, role, principal: format!("key:{}", key.id) })
}
