//! API-key authentication and role checks.
//!
//! A key reads `tk.<key id>.<secret>`; only SHA-256 of the 256-bit secret is
//! stored, and the comparison is constant-time.

use crate::error::{ApiError, ApiResult};
use crate::store::{Store, keys};
use crate::util::{b64url, new_id, now_ms, random_bytes, sha256};
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
    pub key_id: String,
}

/// A freshly minted key: the secret is returned to the caller exactly once.
pub struct MintedKey {
    pub record: keys::ApiKey,
    pub secret: String,
}

pub fn mint_key(tenant_id: &str, name: &str, role: Role) -> MintedKey {
    let id = new_id("key");
    let secret_part = b64url(&random_bytes::<32>());
    let record = keys::ApiKey {
        id: id.clone(),
        tenant_id: tenant_id.to_string(),
        name: name.to_string(),
        role: role.as_str().to_string(),
        secret_hash: sha256(secret_part.as_bytes()),
        created_at_ms: now_ms(),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    MintedKey { record, secret: format!("tk.{id}.{secret_part}") }
}

const BAD_KEY: &str = "the API key is not valid; pass a live key as 'authorization: Bearer <key>'";

/// Resolves the bearer key in `metadata` and checks that its role is one of `allowed`.
pub async fn authorize(store: &Store, metadata: &MetadataMap, allowed: &[Role]) -> ApiResult<Caller> {
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
    let presented = sha256(secret.as_bytes());
    if !bool::from(presented.ct_eq(&key.secret_hash)) || key.revoked_at_ms.is_some() {
        return Err(ApiError::Unauthenticated(BAD_KEY.into()));
    }
    let role =
        Role::parse(&key.role).ok_or_else(|| ApiError::Unauthenticated("the API key has an unknown role".into()))?;
    if !allowed.contains(&role) {
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        return Err(ApiError::denied(format!(
            "this call needs a key with role {}; this key's role is {}",
            names.join(" or "),
            role.as_str()
        )));
    }
    // Bound the write load of the hot path: refresh at most once a minute.
    let now = now_ms();
    if key.last_used_at_ms.is_none_or(|t| now - t > 60_000) {
        keys::touch(store, &key.id, now).await?;
    }
    Ok(Caller { tenant_id: key.tenant_id, role, key_id: key.id })
}
